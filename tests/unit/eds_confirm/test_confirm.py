"""EDS confirmation of a mailbox (rules, para. 12): happy paths and every refusal.

Each refusal must raise the documented error code and leave every row of the
directory as it was, except exactly one new audit event ``eds.confirm`` (or
``eds.challenge``) with outcome ``denied`` and that code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from esam_mail.directory.models import EdsChallenge, EdsConfirmation
from esam_mail.errors import EsamError
from esam_mail.services.accounts.confirmation import (
    CHALLENGE_PREFIX,
    ChallengeExpired,
    ChallengeNotFound,
    ChallengeUsed,
    ConfirmationError,
    EdsNotConfigured,
    MailboxNotConfirmable,
    MailboxUnknown,
    RoleNotAllowed,
    SignerMismatch,
)
from esam_mail.services.accounts.eds import (
    BadSignature,
    CertificateExpired,
    EdsError,
    MalformedCms,
    UntrustedCertificate,
)
from esam_mail.web.statuses import http_status
from tests import eds_testing as t
from tests.unit.eds_confirm.conftest import APPLICANT_BIN, OTHER_BIN, OTHER_IIN, Env, individual_raw

NOW = dt.datetime.now(dt.UTC)


def sign(content: bytes, who: t.Issued, pki: t.DemoPki, **kw: Any) -> bytes:
    return t.sign_cms(content, who.cert, who.key, [pki.intermediate.cert], **kw)


def refused(
    env: Env,
    action: Callable[[], Any],
    error: type[EsamError],
    code: str,
    *,
    audit_action: str = "eds.confirm",
) -> EsamError:
    """Run ``action``; it must raise ``error`` with ``code``, change no row and add one audit event."""
    before, audits = env.snapshot(), env.audits()
    with pytest.raises(error) as exc:
        action()
    assert exc.value.code == code  # type: ignore[attr-defined]
    assert isinstance(exc.value.public, str) and exc.value.public  # type: ignore[attr-defined]
    assert env.snapshot() == before, "a refused confirmation changed the directory"
    new = env.audits()[len(audits) :]
    assert [(a.action, a.outcome, a.detail.get("code")) for a in new] == [(audit_action, "denied", code)]
    return exc.value


@pytest.fixture
def person(env: Env) -> Any:
    return env.register_individual()


@pytest.fixture
def company(env: Env) -> Any:
    return env.register_legal_entity()


# --------------------------------------------------------------------------- happy paths


def test_challenge_format_entropy_and_expiry(env: Env, person: Any) -> None:
    a = env.run(env.confirmations.issue(person.login))
    b = env.run(env.confirmations.issue(person.login))
    assert a.text == f"{CHALLENGE_PREFIX}{person.address}:{a.nonce}"
    assert a.content == a.text.encode()
    assert a.nonce != b.nonce and len(a.nonce) >= 22  # >= 128 bits of URL-safe Base64
    assert a.expires_at == env.clock.now + dt.timedelta(seconds=300)
    assert not env.mailbox(person.login).eds_confirmed
    rows = env.snapshot()["eds_challenges"]
    assert [r[2] for r in rows] == [a.nonce, b.nonce] and all(r[4] is None for r in rows)


def test_individual_confirms_with_auth_certificate(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    done = env.run(env.confirmations.confirm(person.login, sign(ch.content, pki.individual, pki)))
    cert = pki.individual.cert
    assert done.address == person.address
    assert done.signer_iin == t.DEFAULT_IIN and done.signer_bin is None
    assert done.serial.lstrip("0") == f"{cert.serial_number:x}"
    assert done.fingerprint == cert.fingerprint(t.hashes.SHA256()).hex()
    assert "ESAM" not in done.issuer and "(TEST)" in done.issuer  # the issuing CA, not the root
    assert done.not_after == cert.not_valid_after_utc
    assert env.mailbox(person.login).eds_confirmed

    async def rows() -> tuple[list[Any], list[Any]]:
        async with env.directory.sessions() as s:
            c = list((await s.execute(select(EdsConfirmation))).scalars())
            h = list((await s.execute(select(EdsChallenge))).scalars())
            return c, h

    confirmations, challenges = env.run(rows())
    assert len(confirmations) == 1
    row = confirmations[0]
    assert (row.cert_fingerprint, row.cert_serial, row.signer_iin) == (
        done.fingerprint,
        done.serial,
        t.DEFAULT_IIN,
    )
    assert row.cert_issuer == done.issuer and row.not_before is not None
    assert challenges[0].used_at is not None
    last = env.audits()[-1]
    assert (last.action, last.outcome, last.target) == ("eds.confirm", "ok", person.address)

    status = env.run(env.confirmations.status(person.address))
    assert status.confirmed and status.latest is not None
    assert status.latest.fingerprint == done.fingerprint


def test_sign_certificate_base64_and_explicit_challenge(env: Env, person: Any, pki: t.DemoPki) -> None:
    import base64

    first = env.run(env.confirmations.issue(person.login))
    env.run(env.confirmations.issue(person.login))  # a newer one exists; the older is named
    cms = base64.b64encode(sign(first.content, pki.individual_sign, pki)).decode()
    done = env.run(env.confirmations.confirm(person.address, cms, challenge=first.text))
    assert done.signer_iin == t.DEFAULT_IIN
    assert env.mailbox(person.login).eds_confirmed


def test_legal_entity_head_confirms(env: Env, company: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(company.login))
    done = env.run(env.confirmations.confirm(company.login, sign(ch.content, pki.head, pki)))
    assert done.signer_bin == APPLICANT_BIN and done.signer_iin == t.DEFAULT_IIN
    assert env.mailbox(company.login).eds_confirmed


def test_status_of_unconfirmed_and_unknown(env: Env, person: Any) -> None:
    st = env.run(env.confirmations.status(person.login))
    assert not st.confirmed and st.latest is None
    with pytest.raises(MailboxUnknown):
        env.run(env.confirmations.status("nobody"))


# --------------------------------------------------------------------------- bad signatures


def test_tampered_content(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content + b"x", pki.individual, pki)  # signed something else
    refused(env, lambda: env.run(env.confirmations.confirm(person.login, cms)), BadSignature, "bad_signature")


def test_tampered_message_digest(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, pki.individual, pki, message_digest=b"\x00" * 32)
    refused(env, lambda: env.run(env.confirmations.confirm(person.login, cms)), BadSignature, "bad_signature")


def test_tampered_signature_bytes(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = bytearray(sign(ch.content, pki.individual, pki))
    cms[-5] ^= 0xFF  # inside the RSA signature value (last field of SignerInfo)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, bytes(cms))),
        BadSignature,
        "bad_signature",
    )


def test_garbage_cms(env: Env, person: Any) -> None:
    env.run(env.confirmations.issue(person.login))
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, "not a cms!")),
        MalformedCms,
        "malformed_cms",
    )


def test_wrong_certificate_other_iin(env: Env, person: Any, pki: t.DemoPki) -> None:
    other = t.individual_cert(pki.intermediate, iin=OTHER_IIN, key=t.cached_key("rsa", 0))
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, other, pki)
    err = refused(
        env, lambda: env.run(env.confirmations.confirm(person.login, cms)), SignerMismatch, "signer_mismatch"
    )
    assert "IIN" in err.public  # type: ignore[attr-defined]


def test_expired_certificate_even_with_backdated_signing_time(env: Env, person: Any, pki: t.DemoPki) -> None:
    old = t.individual_cert(
        pki.intermediate,
        key=t.cached_key("rsa", 0),
        not_before=NOW - dt.timedelta(days=400),
        not_after=NOW - dt.timedelta(days=1),
    )
    ch = env.run(env.confirmations.issue(person.login))
    # The signer claims to have signed while the certificate was valid: the check uses "now".
    cms = sign(ch.content, old, pki, signing_time=NOW - dt.timedelta(days=30))
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        CertificateExpired,
        "certificate_expired",
    )


def test_not_yet_valid_certificate(env: Env, person: Any, pki: t.DemoPki) -> None:
    future = t.individual_cert(
        pki.intermediate, key=t.cached_key("rsa", 0),
        not_before=NOW + dt.timedelta(days=2), not_after=NOW + dt.timedelta(days=400),
    )  # fmt: skip
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, future, pki, signing_time=None)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        CertificateExpired,
        "certificate_expired",
    )


def test_untrusted_ca(env: Env, person: Any) -> None:
    evil_root = t.root_ca("EVIL ROOT", key=t.cached_key("rsa", 950))
    evil_ca = t.intermediate_ca(evil_root, "EVIL NCA", key=t.cached_key("rsa", 951))
    forged = t.individual_cert(evil_ca, key=t.cached_key("rsa", 0))  # right IIN, wrong issuer
    ch = env.run(env.confirmations.issue(person.login))
    cms = t.sign_cms(ch.content, forged.cert, forged.key, [evil_ca.cert, evil_root.cert])
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        UntrustedCertificate,
        "untrusted_certificate",
    )


def test_lookalike_ca_with_the_trusted_names(env: Env, person: Any, pki: t.DemoPki) -> None:
    """A root and an issuing CA with the trusted names but other keys: the chain does not verify."""
    fake_root = t.root_ca(key=t.cached_key("rsa", 953))  # default name = the trusted root's
    assert fake_root.cert.subject == pki.root.cert.subject
    fake_ca = t.intermediate_ca(fake_root, key=t.cached_key("rsa", 954))
    assert fake_ca.cert.subject == pki.intermediate.cert.subject
    forged = t.individual_cert(fake_ca, key=t.cached_key("rsa", 0))
    ch = env.run(env.confirmations.issue(person.login))
    cms = t.sign_cms(ch.content, forged.cert, forged.key, [fake_ca.cert, fake_root.cert])
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        UntrustedCertificate,
        "untrusted_certificate",
    )


# --------------------------------------------------------------------------- legal entities


def test_legal_entity_other_bin(env: Env, company: Any, pki: t.DemoPki) -> None:
    other = t.legal_entity_cert(
        pki.intermediate, key=t.cached_key("rsa", 3), bin=OTHER_BIN, roles=(t_first_head(),), sign=True
    )
    ch = env.run(env.confirmations.issue(company.login))
    cms = sign(ch.content, other, pki)
    err = refused(
        env, lambda: env.run(env.confirmations.confirm(company.login, cms)), SignerMismatch, "signer_mismatch"
    )
    assert "BIN" in err.public  # type: ignore[attr-defined]


def test_legal_entity_employee_role_refused(env: Env, company: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(company.login))
    cms = sign(ch.content, pki.legal_entity, pki)  # right BIN, role "employee" (1.2.398.3.3.4.1.2.5)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(company.login, cms)),
        RoleNotAllowed,
        "role_not_allowed",
    )


def test_legal_entity_personal_certificate_refused(env: Env, company: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(company.login))
    cms = sign(ch.content, pki.individual, pki)  # no BIN at all
    refused(
        env, lambda: env.run(env.confirmations.confirm(company.login, cms)), SignerMismatch, "signer_mismatch"
    )


def test_individual_mailbox_head_of_other_person_refused(env: Env, pki: t.DemoPki) -> None:
    """A company head's certificate names *their* IIN: it does not confirm someone else's mailbox."""
    done = env.register_individual(individual_raw("other.person", iin=OTHER_IIN))
    ch = env.run(env.confirmations.issue(done.login))
    cms = sign(ch.content, pki.head, pki)
    refused(
        env, lambda: env.run(env.confirmations.confirm(done.login, cms)), SignerMismatch, "signer_mismatch"
    )


def t_first_head() -> str:
    from esam_mail.services.accounts.eds import ROLE_FIRST_HEAD

    return ROLE_FIRST_HEAD


# --------------------------------------------------------------------------- challenges


def test_replayed_challenge(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, pki.individual, pki)
    env.run(env.confirmations.confirm(person.login, cms))
    refused(
        env, lambda: env.run(env.confirmations.confirm(person.login, cms)), ChallengeUsed, "challenge_used"
    )
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms, challenge=ch.text)),
        ChallengeUsed,
        "challenge_used",
    )


def test_old_signature_after_new_challenge(env: Env, person: Any, pki: t.DemoPki) -> None:
    """A CMS over an earlier challenge does not match the newest one."""
    first = env.run(env.confirmations.issue(person.login))
    cms = sign(first.content, pki.individual, pki)
    env.run(env.confirmations.issue(person.login))
    refused(env, lambda: env.run(env.confirmations.confirm(person.login, cms)), BadSignature, "bad_signature")


def test_expired_challenge(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, pki.individual, pki)
    env.clock.advance(299)
    before = env.snapshot()
    env.clock.advance(2)  # 301 s > ttl 300 s
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        ChallengeExpired,
        "challenge_expired",
    )
    assert env.snapshot() == before


def test_expired_exactly_at_ttl(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, pki.individual, pki)
    env.clock.advance(300)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        ChallengeExpired,
        "challenge_expired",
    )


def test_no_challenge_issued(env: Env, person: Any, pki: t.DemoPki) -> None:
    cms = sign(b"esam-confirm:whatever", pki.individual, pki)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        ChallengeNotFound,
        "challenge_unknown",
    )


def test_challenge_of_another_mailbox(env: Env, person: Any, pki: t.DemoPki) -> None:
    other = env.register_individual(individual_raw("other.person", iin=OTHER_IIN))
    theirs = env.run(env.confirmations.issue(other.login))
    env.run(env.confirmations.issue(person.login))
    cms = sign(theirs.content, pki.individual, pki)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms, challenge=theirs.text)),
        ChallengeNotFound,
        "challenge_unknown",
    )


def test_made_up_challenge_text(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    forged = ch.text.replace(person.address, "someone@esam.test")
    cms = sign(forged.encode(), pki.individual, pki)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms, challenge=forged)),
        ChallengeNotFound,
        "challenge_unknown",
    )
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms, challenge="hello")),
        ChallengeNotFound,
        "challenge_unknown",
    )


def test_concurrent_confirmations_one_wins(env: Env, person: Any, pki: t.DemoPki) -> None:
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, pki.individual, pki)

    async def both() -> list[Any]:
        return await asyncio.gather(
            *(env.confirmations.confirm(person.login, cms) for _ in range(3)), return_exceptions=True
        )

    results = env.run(both())
    ok = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 1, results
    assert all(isinstance(e, ChallengeUsed) for e in lost), lost
    assert len(env.snapshot()["eds_confirmations"]) == 1


# --------------------------------------------------------------------------- mailboxes


def test_service_mailbox_cannot_be_confirmed(env: Env, pki: t.DemoPki) -> None:
    box = env.service_mailbox("abuse")
    refused(
        env,
        lambda: env.run(env.confirmations.issue(box.login)),
        MailboxNotConfirmable,
        "not_confirmable",
        audit_action="eds.challenge",
    )
    cms = sign(b"esam-confirm:abuse@esam.test:x", pki.individual, pki)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(box.login, cms)),
        MailboxNotConfirmable,
        "not_confirmable",
    )


def test_unknown_and_suspended_mailboxes(env: Env, person: Any, pki: t.DemoPki) -> None:
    refused(
        env, lambda: env.run(env.confirmations.issue("ghost")), MailboxUnknown, "no_such_mailbox",
        audit_action="eds.challenge",
    )  # fmt: skip
    ch = env.run(env.confirmations.issue(person.login))
    cms = sign(ch.content, pki.individual, pki)
    env.run(env.directory.set_state(person.login, "suspended", actor=("sysadmin", "test")))
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        MailboxNotConfirmable,
        "not_confirmable",
    )


def test_eds_not_configured(make_env: Any, pki: t.DemoPki) -> None:
    env = make_env(None)
    person = env.register_individual()
    env.run(env.confirmations.issue(person.login))
    cms = sign(b"x", pki.individual, pki)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        EdsNotConfigured,
        "eds_not_configured",
    )


def test_short_ttl_from_constructor(make_env: Any, verifier: Any, pki: t.DemoPki) -> None:
    env = make_env(verifier, ttl=10)
    person = env.register_individual()
    ch = env.run(env.confirmations.issue(person.login))
    assert ch.expires_at - env.clock.now == dt.timedelta(seconds=10)
    env.clock.advance(11)
    cms = sign(ch.content, pki.individual, pki)
    refused(
        env,
        lambda: env.run(env.confirmations.confirm(person.login, cms)),
        ChallengeExpired,
        "challenge_expired",
    )


def test_error_classes_carry_codes() -> None:
    for cls in (ChallengeExpired, ChallengeUsed, ChallengeNotFound, SignerMismatch, RoleNotAllowed,
                MailboxNotConfirmable, MailboxUnknown, EdsNotConfigured):  # fmt: skip
        e = cls()
        assert isinstance(e, ConfirmationError) and e.code and e.public
        assert not hasattr(e, "http_status")  # the HTTP front-end maps it (web/statuses.py)
        assert 400 <= http_status(e) < 600
    assert issubclass(BadSignature, EdsError)


def test_http_statuses_are_mapped_by_the_front_end() -> None:
    assert http_status(MailboxUnknown()) == 404  # the subclass wins over MailboxNotConfirmable's 409
    assert http_status(MailboxNotConfirmable()) == 409
    assert http_status(SignerMismatch()) == 403
    assert http_status(EdsNotConfigured()) == 503
    assert http_status(ConfirmationError()) == 400
    assert http_status(EsamError("other"), default=418) == 418
