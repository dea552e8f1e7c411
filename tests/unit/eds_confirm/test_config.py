"""``[eds]`` config -> the verifier the services use (trust anchors, CRL policy, test-CA mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from esam_mail.errors import ConfigError
from esam_mail.services.accounts.confirmation import verifier_from_config
from esam_mail.services.accounts.eds import NoIdentity, Revoked, UntrustedCertificate
from tests import eds_testing as t
from tests.conftest import write_config


def load(tmp_path: Path, **eds: Any) -> Any:
    from esam_mail import config

    return config.load(write_config(tmp_path, eds=eds))


def anchors(tmp_path: Path, pki: t.DemoPki) -> str:
    path = tmp_path / "root.pem"
    path.write_bytes(pki.root.pem)
    return str(path)


def test_no_trust_anchors_means_no_verifier(tmp_path: Path) -> None:
    assert verifier_from_config(load(tmp_path)) is None


def test_unreadable_anchor_names_the_key(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    crl = tmp_path / "junk.crl"
    crl.write_bytes(b"nope")
    with pytest.raises(ConfigError) as exc:
        verifier_from_config(
            load(tmp_path, trust_anchors=[str(junk)], revocation="crl", crl_files=[str(crl)])
        )
    assert any(p.startswith("eds.trust_anchors:") for p in exc.value.problems), exc.value.problems
    assert any(p.startswith("eds.crl_files:") for p in exc.value.problems), exc.value.problems


def test_crl_policy_refuses_revoked_certificate(tmp_path: Path, pki: t.DemoPki) -> None:
    revoked = t.individual_cert(pki.intermediate, key=t.cached_key("rsa", 0), serial=0x5EED)
    crl_file = tmp_path / "nca.crl"
    crl_file.write_bytes(t.to_pem(t.crl(pki.intermediate, [revoked.cert])))
    cfg = load(tmp_path, trust_anchors=[anchors(tmp_path, pki)], revocation="crl", crl_files=[str(crl_file)])
    verifier = verifier_from_config(cfg)
    assert verifier is not None
    good = t.sign_cms(b"x", pki.individual.cert, pki.individual.key, [pki.intermediate.cert])
    assert verifier.verify(good, b"x").iin == t.DEFAULT_IIN
    bad = t.sign_cms(b"x", revoked.cert, revoked.key, [pki.intermediate.cert])
    with pytest.raises(Revoked):
        verifier.verify(bad, b"x")


def test_test_ca_mode_trusts_only_the_test_pki(tmp_path: Path, pki: t.DemoPki) -> None:
    """eds.test_ca_mode (issue 16): exactly the PKI of `esam eds test-pki init`, nothing else."""
    from esam_mail.services.accounts.confirmation import test_pki_folder
    from esam_mail.services.accounts.test_pki import init_test_pki

    with pytest.raises(ConfigError) as exc:  # mixing production anchors into test mode is refused
        verifier_from_config(load(tmp_path, trust_anchors=[anchors(tmp_path, pki)], test_ca_mode=True))
    assert exc.value.problems[0].startswith("eds.test_ca_mode:")
    cfg = load(tmp_path, test_ca_mode=True)
    with pytest.raises(ConfigError) as exc:  # no test PKI made yet
        verifier_from_config(cfg)
    assert "esam eds test-pki init" in exc.value.problems[0]
    init_test_pki(test_pki_folder(cfg))
    verifier = verifier_from_config(cfg)
    assert verifier is not None
    other = t.sign_cms(b"x", pki.individual.cert, pki.individual.key, [pki.intermediate.cert])
    with pytest.raises(UntrustedCertificate):  # a certificate of another PKI
        verifier.verify(other, b"x")
    dummy = t.individual_cert(pki.intermediate, key=t.cached_key("rsa", 0), iin=t.TEST_IIN)
    with pytest.raises((NoIdentity, UntrustedCertificate)):
        verifier.verify(t.sign_cms(b"x", dummy.cert, dummy.key, [pki.intermediate.cert]), b"x")
