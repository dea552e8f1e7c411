"""BuiltinVerifier: validity periods, path building, trust anchors, CRLs, configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from esam_mail.errors import ConfigError
from esam_mail.services.accounts import eds
from tests import eds_testing as t

from .conftest import LongPki

NONCE = b"challenge-0123456789abcdef"


def _sign(who: t.Issued, inter: t.Issued, **kw: object) -> bytes:
    return t.sign_cms(NONCE, who.cert, who.key, [inter.cert], **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validity


def _dated(long_pki: LongPki, year_from: int, year_to: int) -> t.Issued:
    return t.individual_cert(
        long_pki.intermediate,
        not_before=datetime(year_from, 1, 1, tzinfo=UTC),
        not_after=datetime(year_to, 1, 1, tzinfo=UTC),
    )


def test_expired_at_signing_time(long_pki: LongPki, long_verifier: eds.BuiltinVerifier) -> None:
    who = _dated(long_pki, 2020, 2021)
    cms = _sign(who, long_pki.intermediate, signing_time=datetime(2022, 6, 1, tzinfo=UTC))
    with pytest.raises(eds.CertificateExpired, match="expired") as info:
        long_verifier.verify(cms, NONCE)
    assert info.value.code == "certificate_expired"


def test_not_yet_valid_at_signing_time(
    long_pki: LongPki, long_verifier: eds.BuiltinVerifier
) -> None:
    who = _dated(long_pki, 2021, 2044)
    cms = _sign(who, long_pki.intermediate, signing_time=datetime(2020, 6, 1, tzinfo=UTC))
    with pytest.raises(eds.CertificateExpired, match="not yet valid"):
        long_verifier.verify(cms, NONCE)


def test_valid_at_signing_time_but_expired_now(
    long_pki: LongPki, long_verifier: eds.BuiltinVerifier
) -> None:
    """Default: validity at the signing time; ``at`` overrides (fresh challenge -> now)."""
    who = _dated(long_pki, 2020, 2021)
    cms = _sign(who, long_pki.intermediate, signing_time=datetime(2020, 6, 1, tzinfo=UTC))
    assert long_verifier.verify(cms, NONCE).signing_time == datetime(2020, 6, 1, tzinfo=UTC)
    with pytest.raises(eds.CertificateExpired):
        long_verifier.verify(cms, NONCE, at=datetime.now(UTC))
    assert long_verifier.verify(cms, NONCE, at=datetime(2020, 7, 1)).iin  # naive = UTC


def test_no_signing_time_checks_now(long_pki: LongPki, long_verifier: eds.BuiltinVerifier) -> None:
    who = _dated(long_pki, 2020, 2021)
    with pytest.raises(eds.CertificateExpired):
        long_verifier.verify(_sign(who, long_pki.intermediate, signing_time=None), NONCE)


def test_expired_intermediate(long_pki: LongPki, long_verifier: eds.BuiltinVerifier) -> None:
    inter = t.intermediate_ca(
        long_pki.root,
        "SHORT NCA",
        key=t.cached_key("rsa", 930),
        not_before=datetime(2015, 1, 1, tzinfo=UTC),
        not_after=datetime(2019, 1, 1, tzinfo=UTC),
    )
    who = t.individual_cert(
        inter,
        not_before=datetime(2016, 1, 1, tzinfo=UTC),
        not_after=datetime(2040, 1, 1, tzinfo=UTC),
    )
    cms = _sign(who, inter, signing_time=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(eds.CertificateExpired, match="issuing CA"):
        long_verifier.verify(cms, NONCE)


# --------------------------------------------------------------------------- chain


def test_untrusted_root(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    other_root = t.root_ca("OTHER ROOT", key=t.cached_key("rsa", 910))
    other_inter = t.intermediate_ca(other_root, "OTHER NCA", key=t.cached_key("rsa", 911))
    who = t.individual_cert(other_inter)
    cms = t.sign_cms(NONCE, who.cert, who.key, [other_inter.cert, other_root.cert])
    with pytest.raises(eds.UntrustedCertificate) as info:
        verifier.verify(cms, NONCE)
    assert info.value.code == "untrusted_certificate"


def test_impostor_ca_with_the_trusted_names(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    """Same subject names as the trusted root and intermediate, different keys."""
    fake_root = t.root_ca(key=t.cached_key("rsa", 912))
    fake_inter = t.intermediate_ca(fake_root, key=t.cached_key("rsa", 913))
    assert fake_inter.cert.subject == pki.intermediate.cert.subject
    who = t.individual_cert(fake_inter)
    with pytest.raises(eds.UntrustedCertificate):
        verifier.verify(t.sign_cms(NONCE, who.cert, who.key, [fake_inter.cert]), NONCE)


def test_missing_intermediate(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    cms = t.sign_cms(NONCE, pki.individual.cert, pki.individual.key)
    with pytest.raises(eds.UntrustedCertificate, match="incomplete"):
        verifier.verify(cms, NONCE)
    # NCALayer usually sends only the signer cert: configure the NCA certificate instead.
    configured = eds.BuiltinVerifier([pki.root.cert], intermediates=[pki.intermediate.cert])
    assert configured.verify(cms, NONCE).iin == t.DEFAULT_IIN
    pinned = eds.BuiltinVerifier([pki.intermediate.cert])
    assert pinned.verify(cms, NONCE).iin == t.DEFAULT_IIN


def test_root_included_in_cms_is_fine(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    cms = t.sign_cms(
        NONCE, pki.individual.cert, pki.individual.key, [pki.root.cert, pki.intermediate.cert]
    )
    assert verifier.verify(cms, NONCE).iin == t.DEFAULT_IIN


def test_issuer_that_is_not_a_ca(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    not_ca = t.intermediate_ca(pki.root, "NOT A CA", key=t.cached_key("rsa", 914), ca=False)
    who = t.individual_cert(not_ca)
    with pytest.raises(eds.UntrustedCertificate, match="is not a CA"):
        verifier.verify(_sign(who, not_ca), NONCE)


def test_issuer_without_key_cert_sign(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    weak = t.intermediate_ca(
        pki.root, "NO KEYCERTSIGN", key=t.cached_key("rsa", 915), key_usage={"crl_sign"}
    )
    who = t.individual_cert(weak)
    with pytest.raises(eds.UntrustedCertificate, match="may not sign certificates"):
        verifier.verify(_sign(who, weak), NONCE)


def test_path_length_constraint(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    """The default intermediate has pathLen 0: it may not issue another CA."""
    sub = t.intermediate_ca(pki.intermediate, "SUB CA", key=t.cached_key("rsa", 916))
    who = t.individual_cert(sub)
    cms = t.sign_cms(NONCE, who.cert, who.key, [sub.cert, pki.intermediate.cert])
    with pytest.raises(eds.UntrustedCertificate, match="path length"):
        verifier.verify(cms, NONCE)


# --------------------------------------------------------------------------- CRL


def _crl_verifier(pki: t.DemoPki, *crls: object) -> eds.BuiltinVerifier:
    return eds.BuiltinVerifier(
        [pki.root.cert], revocation="crl", crl_paths=crls  # type: ignore[arg-type]
    )


def test_revoked_via_crl(pki: t.DemoPki) -> None:
    revoked = t.crl(pki.intermediate, [pki.individual.cert])
    v = _crl_verifier(pki, revoked)
    with pytest.raises(eds.Revoked) as info:
        v.verify(_sign(pki.individual, pki.intermediate), NONCE)
    assert info.value.code == "revoked"
    assert v.verify(_sign(pki.legal_entity, pki.intermediate), NONCE).bin == t.DEFAULT_BIN


def test_revocation_off_ignores_crls(pki: t.DemoPki) -> None:
    v = eds.BuiltinVerifier([pki.root.cert], crl_paths=[t.crl(pki.intermediate, [pki.individual.cert])])
    assert v.verify(_sign(pki.individual, pki.intermediate), NONCE)


def test_crl_files_pem_and_der(pki: t.DemoPki, tmp_path: Path) -> None:
    revoked = t.crl(pki.intermediate, [pki.individual.cert])
    pem, der = tmp_path / "nca.pem", tmp_path / "nca.crl"
    pem.write_bytes(t.to_pem(revoked))
    der.write_bytes(revoked.public_bytes(serialization.Encoding.DER))
    for path in (pem, str(der)):
        with pytest.raises(eds.Revoked):
            _crl_verifier(pki, path).verify(_sign(pki.individual, pki.intermediate), NONCE)


def test_no_crl_for_issuer_fails_closed(pki: t.DemoPki) -> None:
    v = _crl_verifier(pki, t.crl(pki.root))  # a CRL, but not from the signer's issuer
    with pytest.raises(eds.RevocationUnavailable) as info:
        v.verify(_sign(pki.individual, pki.intermediate), NONCE)
    assert info.value.temporary


def test_stale_crl(pki: t.DemoPki) -> None:
    now = datetime.now(UTC)
    stale = t.crl(
        pki.intermediate, last_update=now - timedelta(days=10), next_update=now - timedelta(days=1)
    )
    with pytest.raises(eds.RevocationUnavailable):
        _crl_verifier(pki, stale).verify(_sign(pki.individual, pki.intermediate), NONCE)


def test_forged_crl_is_ignored(pki: t.DemoPki) -> None:
    forged = t.crl(pki.intermediate, signing_key=t.cached_key("rsa", 917))
    with pytest.raises(eds.RevocationUnavailable):
        _crl_verifier(pki, forged).verify(_sign(pki.individual, pki.intermediate), NONCE)


def test_revoked_intermediate(pki: t.DemoPki) -> None:
    v = _crl_verifier(pki, t.crl(pki.intermediate), t.crl(pki.root, [pki.intermediate.cert]))
    with pytest.raises(eds.Revoked, match="issuing CA"):
        v.verify(_sign(pki.individual, pki.intermediate), NONCE)


def test_update_crls(pki: t.DemoPki) -> None:
    v = _crl_verifier(pki, t.crl(pki.intermediate))
    cms = _sign(pki.individual, pki.intermediate)
    assert v.verify(cms, NONCE)
    v.update_crls([t.crl(pki.intermediate, [pki.individual.cert])])
    with pytest.raises(eds.Revoked):
        v.verify(cms, NONCE)
    with pytest.raises(ConfigError):
        v.update_crls([b"not a crl"])
    with pytest.raises(eds.Revoked):  # the previous set stays
        v.verify(cms, NONCE)


# --------------------------------------------------------------------------- configuration


def test_trust_anchor_files(pki: t.DemoPki, tmp_path: Path) -> None:
    pem = tmp_path / "roots.pem"
    pem.write_bytes(t.to_pem(t.root_ca("UNRELATED", key=t.cached_key("rsa", 918))) + pki.root.pem)
    der = tmp_path / "root.cer"
    der.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.DER))
    cms = _sign(pki.individual, pki.intermediate)
    for anchors in ([pem], [str(der)], [pki.root.pem]):
        assert eds.BuiltinVerifier(anchors).verify(cms, NONCE).iin == t.DEFAULT_IIN


def test_bad_configuration_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        eds.BuiltinVerifier(
            [tmp_path / "missing.pem"],
            revocation="ocsp",  # type: ignore[arg-type]
            crl_paths=[b"junk"],
        )
    assert len(info.value.problems) == 3
    with pytest.raises(ConfigError, match="no trust anchor"):
        eds.BuiltinVerifier([])


def test_verifier_satisfies_protocol(verifier: eds.BuiltinVerifier) -> None:
    v: eds.SignatureVerifier = verifier
    assert callable(v.verify)
