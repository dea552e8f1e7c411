"""Online applications signed with EDS (rules, para. 6.1): the signature over the canonical
bytes, the signer is the applicant, the same registration as the office channel.

A refused application writes nothing (no subscriber, application, mailbox or Maildir)
but one ``registration.online`` audit event with outcome ``denied`` and the error code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from esam_mail.directory.models import Application
from esam_mail.errors import EsamError, LoginTaken
from esam_mail.services.accounts.application import (
    ValidationErrors,
    canonical_json,
    signed_document,
    validate_individual,
)
from esam_mail.services.accounts.confirmation import EdsNotConfigured, RoleNotAllowed, SignerMismatch
from esam_mail.services.accounts.eds import (
    ROLE_FIRST_HEAD,
    BadSignature,
    CertificateExpired,
    KeyUsageNotAllowed,
    MalformedCms,
    UntrustedCertificate,
)
from esam_mail.services.accounts.online import ConsentNotSigned
from tests import eds_testing as t
from tests.conftest import ROOT
from tests.unit.eds_confirm.conftest import (
    APPLICANT_BIN,
    OTHER_BIN,
    OTHER_IIN,
    PASSWORD,
    Env,
    individual_raw,
    legal_entity_raw,
)

NOW = dt.datetime.now(dt.UTC)


def signed(env: Env, raw: dict[str, Any], kind: str, who: t.Issued, pki: t.DemoPki,
           language: str | None = None, **kw: Any) -> str:
    """Base64 detached CMS over the canonical bytes of ``raw``, as NCALayer returns it."""
    data = env.online.canonical(raw, kind, language)
    return base64.b64encode(t.sign_cms(data, who.cert, who.key, [pki.intermediate.cert], **kw)).decode()


def submit(env: Env, raw: dict[str, Any], kind: str, signature: str | None, **kw: Any) -> Any:
    kw.setdefault("accepted_agreement", env.cfg.registration.agreement_version)
    kw.setdefault("password", PASSWORD)
    return env.run(env.online.submit(raw, kind=kind, signature=signature, **kw))


def refused(env: Env, action: Callable[[], Any], error: type[EsamError], code: str) -> None:
    before, audits = env.snapshot(), env.audits()
    with pytest.raises(error) as exc:
        action()
    assert exc.value.code == code  # type: ignore[attr-defined]
    assert env.snapshot() == before, "a refused application wrote something"
    new = env.audits()[len(audits) :]
    assert [(a.action, a.outcome, a.detail.get("code")) for a in new] == [
        ("registration.online", "denied", code)
    ]


# --------------------------------------------------------------------------- canonical bytes


def test_canonical_is_the_validated_application_and_the_consent(env: Env) -> None:
    raw = individual_raw()
    raw["surname"] = "  тестов "  # the validator normalises; the signed bytes are the normal form
    data = env.online.canonical(raw, "individual", "ru")
    doc = json.loads(data)
    assert json.dumps(doc["application"], sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode() \
        == canonical_json(validate_individual(raw))
    text = (ROOT / "conf" / "agreement.ru.txt").read_bytes()
    assert doc["consent"] == {"agreement_version": env.cfg.registration.agreement_version,
                              "agreement_sha256": hashlib.sha256(text).hexdigest(), "language": "ru"}
    assert doc["schema"] == 2
    assert b'"kind":"individual"' in data and "ТЕСТОВ".encode() not in data
    kk = json.loads(env.online.canonical(raw, "individual", "kk"))["consent"]
    assert kk["language"] == "kk" and kk["agreement_sha256"] != doc["consent"]["agreement_sha256"]


def test_signature_over_the_bare_application_is_refused(env: Env, pki: t.DemoPki) -> None:
    """A CMS over the application alone (schema 1) proves no consent to the agreement."""
    raw = individual_raw()
    bare = canonical_json(validate_individual(raw))
    who = pki.individual_sign
    sig = base64.b64encode(t.sign_cms(bare, who.cert, who.key, [pki.intermediate.cert])).decode()
    refused(env, lambda: submit(env, raw, "individual", sig), ConsentNotSigned, "consent_not_signed")


def test_signature_over_another_language_or_version_is_refused(env: Env, pki: t.DemoPki) -> None:
    raw = individual_raw()
    sig = signed(env, raw, "individual", pki.individual_sign, pki, language="kk")
    refused(env, lambda: submit(env, raw, "individual", sig, language="ru"), BadSignature, "bad_signature")
    app = validate_individual(raw)
    old = signed_document(app, agreement_version="2025-1", agreement_sha256="0" * 64, language="kk")
    who = pki.individual_sign
    sig = base64.b64encode(t.sign_cms(old, who.cert, who.key, [pki.intermediate.cert])).decode()
    refused(env, lambda: submit(env, raw, "individual", sig, language="kk"), BadSignature, "bad_signature")


def test_consent_records_the_language_and_hash_signed(env: Env, pki: t.DemoPki) -> None:
    raw = individual_raw()
    sig = signed(env, raw, "individual", pki.individual_sign, pki, language="ru")
    submit(env, raw, "individual", sig, language="ru")
    [row] = env.run(_applications(env))
    text = (ROOT / "conf" / "agreement.ru.txt").read_bytes()
    assert (row.agreement_language, row.agreement_sha256) == ("ru", hashlib.sha256(text).hexdigest())


def test_canonical_refuses_invalid_application(env: Env) -> None:
    raw = individual_raw()
    raw["iin"] = "123"
    del raw["mobile_phone"]
    with pytest.raises(ValidationErrors) as exc:
        env.online.canonical(raw, "individual")
    assert {"iin", "mobile_phone"} <= set(exc.value.fields)
    with pytest.raises(ValidationErrors) as exc:
        env.online.canonical(raw, "robot")
    assert exc.value.fields == ("kind",)
    with pytest.raises(ValidationErrors) as exc:
        env.online.canonical(["not", "a", "dict"], "individual")
    assert exc.value.fields == ("application",)


# --------------------------------------------------------------------------- happy paths


def test_individual_online_application(env: Env, pki: t.DemoPki) -> None:
    raw = individual_raw()
    sig = signed(env, raw, "individual", pki.individual_sign, pki)
    done = submit(env, raw, "individual", sig)
    assert done.address == "test.testov@esam.test" and done.status == "active"
    assert done.password is None
    assert env.store.user("test.testov").exists()
    app = env.snapshot()["applications"][0]
    assert app[1] == "online"
    assert app[2] == pki.individual_sign.cert.fingerprint(t.hashes.SHA256()).hex()
    rows = env.run(_applications(env))
    assert rows[0].signature == base64.b64decode(sig)  # the CMS is kept, as DER
    assert rows[0].office_code is None and rows[0].employee_id is None
    ok = env.audits()[-1]
    assert (ok.action, ok.outcome, ok.actor_kind, ok.actor_id) == (
        "mailbox.register", "ok", "subscriber", t.DEFAULT_IIN,
    )  # fmt: skip


async def _applications(env: Env) -> list[Any]:
    from sqlalchemy import select

    async with env.directory.sessions() as s:
        return list((await s.execute(select(Application))).scalars())


def test_legal_entity_head_online_application(env: Env, pki: t.DemoPki) -> None:
    raw = legal_entity_raw()
    done = submit(env, raw, "legal_entity", signed(env, raw, "legal_entity", pki.head, pki))
    assert done.address == "test.too@esam.test"
    assert env.snapshot()["subscribers"][0][1:] == ("legal_entity", None, APPLICANT_BIN)


# --------------------------------------------------------------------------- refusals


def test_missing_signature_is_a_field_error(env: Env) -> None:
    before = env.snapshot()
    with pytest.raises(ValidationErrors) as exc:
        submit(env, individual_raw(), "individual", None)
    assert exc.value.fields == ("signature",)
    assert env.snapshot() == before


def test_invalid_fields_and_missing_signature_together(env: Env) -> None:
    raw = individual_raw()
    raw["iin"] = "900101300812"  # checksum fails
    with pytest.raises(ValidationErrors) as exc:
        submit(env, raw, "individual", "")
    assert set(exc.value.fields) == {"iin", "signature"}


def test_tampered_application(env: Env, pki: t.DemoPki) -> None:
    raw = individual_raw()
    sig = signed(env, raw, "individual", pki.individual_sign, pki)
    raw["mobile_phone"] = "+7 701 999 99 99"  # changed after signing
    refused(env, lambda: submit(env, raw, "individual", sig), BadSignature, "bad_signature")


def test_signature_over_other_username(env: Env, pki: t.DemoPki) -> None:
    sig = signed(env, individual_raw("first.choice"), "individual", pki.individual_sign, pki)
    raw = individual_raw("second.choice")
    refused(env, lambda: submit(env, raw, "individual", sig), BadSignature, "bad_signature")


def test_garbage_signature(env: Env) -> None:
    refused(
        env,
        lambda: submit(env, individual_raw(), "individual", "bm90IGEgY21z"),
        MalformedCms,
        "malformed_cms",
    )


def test_signer_is_not_the_applicant(env: Env, pki: t.DemoPki) -> None:
    raw = individual_raw(iin=OTHER_IIN)  # the certificate says DEFAULT_IIN
    sig = signed(env, raw, "individual", pki.individual_sign, pki)
    refused(env, lambda: submit(env, raw, "individual", sig), SignerMismatch, "signer_mismatch")


def test_auth_certificate_refused_for_a_document(env: Env, pki: t.DemoPki) -> None:
    raw = individual_raw()
    sig = signed(env, raw, "individual", pki.individual, pki)  # AUTH key
    refused(env, lambda: submit(env, raw, "individual", sig), KeyUsageNotAllowed, "key_usage_not_allowed")


def test_expired_certificate(env: Env, pki: t.DemoPki) -> None:
    old = t.individual_cert(
        pki.intermediate, key=t.cached_key("rsa", 2), sign=True,
        not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1),
    )  # fmt: skip
    raw = individual_raw()
    sig = signed(env, raw, "individual", old, pki, signing_time=NOW - dt.timedelta(days=10))
    refused(env, lambda: submit(env, raw, "individual", sig), CertificateExpired, "certificate_expired")


def test_untrusted_ca(env: Env, pki: t.DemoPki) -> None:
    evil_root = t.root_ca("EVIL ROOT", key=t.cached_key("rsa", 950))
    forged = t.individual_cert(evil_root, key=t.cached_key("rsa", 2), sign=True)
    raw = individual_raw()
    data = env.online.canonical(raw, "individual")
    sig = base64.b64encode(t.sign_cms(data, forged.cert, forged.key, [evil_root.cert])).decode()
    refused(env, lambda: submit(env, raw, "individual", sig), UntrustedCertificate, "untrusted_certificate")


def test_legal_entity_bin_mismatch(env: Env, pki: t.DemoPki) -> None:
    raw = legal_entity_raw(bin=OTHER_BIN)
    sig = signed(env, raw, "legal_entity", pki.head, pki)  # head of APPLICANT_BIN
    refused(env, lambda: submit(env, raw, "legal_entity", sig), SignerMismatch, "signer_mismatch")


def test_legal_entity_employee_refused(env: Env, pki: t.DemoPki) -> None:
    employee = t.legal_entity_cert(pki.intermediate, key=t.cached_key("rsa", 1), sign=True)  # role …2.5
    raw = legal_entity_raw()
    sig = signed(env, raw, "legal_entity", employee, pki)
    refused(env, lambda: submit(env, raw, "legal_entity", sig), RoleNotAllowed, "role_not_allowed")


def test_legal_entity_signed_by_individual_certificate(env: Env, pki: t.DemoPki) -> None:
    raw = legal_entity_raw()
    sig = signed(env, raw, "legal_entity", pki.individual_sign, pki)
    refused(env, lambda: submit(env, raw, "legal_entity", sig), SignerMismatch, "signer_mismatch")


def test_signing_right_role_accepted(env: Env, pki: t.DemoPki) -> None:
    from esam_mail.services.accounts.eds import ROLE_SIGNING_RIGHT

    signer = t.legal_entity_cert(
        pki.intermediate, key=t.cached_key("rsa", 3), roles=(ROLE_SIGNING_RIGHT,), sign=True
    )
    raw = legal_entity_raw()
    assert submit(env, raw, "legal_entity", signed(env, raw, "legal_entity", signer, pki)).status == "active"
    assert ROLE_FIRST_HEAD != ROLE_SIGNING_RIGHT


def test_eds_not_configured(make_env: Any, pki: t.DemoPki) -> None:
    env = make_env(None)
    raw = individual_raw()
    sig = base64.b64encode(t.sign_cms(b"x", pki.individual_sign.cert, pki.individual_sign.key)).decode()
    refused(env, lambda: submit(env, raw, "individual", sig), EdsNotConfigured, "eds_not_configured")


def test_same_registration_rules_apply(env: Env, pki: t.DemoPki) -> None:
    """No agreement -> field error; a taken user name -> LoginTaken, as at a post office."""
    raw = individual_raw()
    sig = signed(env, raw, "individual", pki.individual_sign, pki)
    with pytest.raises(ValidationErrors) as exc:
        submit(env, raw, "individual", sig, accepted_agreement=None)
    assert exc.value.fields == ("accept_agreement",)
    with pytest.raises(ValidationErrors) as exc:
        submit(env, raw, "individual", sig, password="short")
    assert exc.value.fields == ("password",)
    assert env.snapshot()["mailboxes"] == []
    submit(env, raw, "individual", sig)
    other = individual_raw(iin=OTHER_IIN)  # same user name, another (correctly signing) person
    other_signer = t.individual_cert(pki.intermediate, iin=OTHER_IIN, key=t.cached_key("rsa", 2), sign=True)
    before = env.snapshot()
    with pytest.raises(LoginTaken):
        submit(env, other, "individual", signed(env, other, "individual", other_signer, pki))
    assert env.snapshot() == before
