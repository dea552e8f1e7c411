"""The EDS HTTP API over a real socket: online applications, confirmation, agreement, /apply.

The server trusts the test PKI's root (``eds.trust_anchors``); the registry policy is
``accept`` so that a registered mailbox is active at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import eds_testing as t
from tests.conftest import ROOT
from tests.protocol.harness import Running
from tests.unit.eds_confirm.conftest import OTHER_IIN, individual_raw, legal_entity_raw

pytestmark = pytest.mark.protocol

PASSWORD = "correct horse battery"


def call(
    r: Running,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: tuple[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{r.ports['http']}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, payload, headers = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, payload, headers = e.code, e.read(), dict(e.headers)
    ctype = headers.get("content-type", headers.get("Content-Type", ""))
    return (
        status,
        (json.loads(payload) if "json" in ctype else payload.decode()),
        {k.lower(): v for k, v in headers.items()},
    )


@pytest.fixture(scope="module")
def pki() -> t.DemoPki:
    return t.default_pki()


@pytest.fixture
def anchors(tmp_path: Path, pki: t.DemoPki) -> str:
    path = tmp_path / "trust" / "root.pem"
    path.parent.mkdir()
    path.write_bytes(pki.root.pem)
    return str(path)


@pytest.fixture
def server(make_running: Any, anchors: str) -> Running:
    return make_running(eds={"trust_anchors": [anchors]}, registration={"registry_policy": "accept"})  # type: ignore[no-any-return]


def cms_b64(content: bytes, who: t.Issued, pki: t.DemoPki, **kw: Any) -> str:
    return base64.b64encode(t.sign_cms(content, who.cert, who.key, [pki.intermediate.cert], **kw)).decode()


def canonical(r: Running, kind: str, app: dict[str, Any]) -> bytes:
    status, body, _ = call(r, "POST", "/api/v1/applications/canonical", {"kind": kind, "application": app})
    assert status == 200, body
    data = base64.b64decode(body["base64"])
    assert data.decode() == body["canonical"] and hashlib.sha256(data).hexdigest() == body["sha256"]
    return data


def apply(r: Running, kind: str, app: dict[str, Any], signature: str | None, **extra: Any) -> tuple[int, Any]:
    body = {
        "kind": kind,
        "application": app,
        "accept_agreement": r.cfg.registration.agreement_version,
        "password": PASSWORD,
        "signature": signature,
        **extra,
    }
    status, reply, _ = call(r, "POST", "/api/v1/applications", body)
    return status, reply


def test_signed_document_covers_the_consent_over_the_wire(server: Running, pki: t.DemoPki) -> None:
    """Issue 16, item 2: the document has the agreement version, SHA-256 and language, and a
    signature that does not cover them is refused."""
    from esam_mail.services.accounts.application import canonical_json, validate_individual

    app = individual_raw()
    status, body, _ = call(server, "POST", "/api/v1/applications/canonical",
                           {"kind": "individual", "application": app, "language": "ru"})
    assert status == 200, body
    text = (ROOT / "conf" / "agreement.ru.txt").read_bytes()
    consent = {"agreement_version": server.cfg.registration.agreement_version,
               "agreement_sha256": hashlib.sha256(text).hexdigest(), "language": "ru"}
    assert body["consent"] == consent and json.loads(body["canonical"])["consent"] == consent
    bare = cms_b64(canonical_json(validate_individual(app)), pki.individual_sign, pki)
    status, reply = apply(server, "individual", app, bare, language="ru")
    assert status == 400 and reply["error"] == "consent_not_signed", reply
    ru = cms_b64(base64.b64decode(body["base64"]), pki.individual_sign, pki)
    status, reply = apply(server, "individual", app, ru, language="kk")  # signed the Russian edition
    assert status == 400 and reply["error"] == "bad_signature", reply
    status, reply = apply(server, "individual", app, ru, language="ru")
    assert status == 201, reply


def register(r: Running, pki: t.DemoPki, username: str = "test.testov") -> str:
    app = individual_raw(username)
    status, body = apply(
        r, "individual", app, cms_b64(canonical(r, "individual", app), pki.individual_sign, pki)
    )
    assert status == 201, body
    return str(body["login"])


def mailbox(r: Running, login: str) -> Any:
    return r.lt.run(r.services.directory.get(login))


# --------------------------------------------------------------------------- agreement, canonical


def test_agreement(server: Running) -> None:
    status, body, _ = call(server, "GET", "/api/v1/agreement")
    text = (ROOT / "conf" / "agreement.txt").read_bytes()
    assert status == 200
    assert body == {
        "version": server.cfg.registration.agreement_version,
        "sha256": hashlib.sha256(text).hexdigest(),
        "text": text.decode(),
    }


def test_canonical_matches_service_and_reports_fields(server: Running) -> None:
    from esam_mail.services.accounts.application import signed_document, validate_individual

    app = individual_raw()
    text = (ROOT / "conf" / "agreement.kk.txt").read_bytes()
    assert canonical(server, "individual", app) == signed_document(
        validate_individual(app), agreement_version=server.cfg.registration.agreement_version,
        agreement_sha256=hashlib.sha256(text).hexdigest(), language="kk")
    bad = {**app, "iin": "12", "username": "postmaster"}
    status, body, _ = call(
        server, "POST", "/api/v1/applications/canonical", {"kind": "individual", "application": bad}
    )
    assert status == 422 and body["error"] == "invalid"
    assert {"iin", "username"} <= {p["field"] for p in body["problems"]}
    status, body, _ = call(server, "POST", "/api/v1/applications/canonical", raw=b"{nope")
    assert status == 422 and body["problems"][0]["field"] == "body"


# --------------------------------------------------------------------------- applications


def test_online_application_creates_a_working_mailbox(server: Running, pki: t.DemoPki) -> None:
    app = individual_raw()
    status, body = apply(
        server, "individual", app, cms_b64(canonical(server, "individual", app), pki.individual_sign, pki)
    )
    assert status == 201, body
    assert body["address"] == "test.testov@esam.test" and body["status"] == "active"
    assert "password" not in body
    rec = mailbox(server, "test.testov")
    assert rec is not None and rec.state == "active"
    principal = server.lt.run(
        server.services.authenticator.authenticate("test.testov", PASSWORD, peer="127.0.0.1", service="imap")
    )
    assert principal.address == "test.testov@esam.test"


def test_legal_entity_application(server: Running, pki: t.DemoPki) -> None:
    app = legal_entity_raw()
    sig = cms_b64(canonical(server, "legal_entity", app), pki.head, pki)
    status, body = apply(server, "legal_entity", app, sig)
    assert status == 201 and body["address"] == "test.too@esam.test"
    employee = t.legal_entity_cert(pki.intermediate, key=t.cached_key("rsa", 1), sign=True)
    app2 = legal_entity_raw("test.too2")
    status, body = apply(
        server, "legal_entity", app2, cms_b64(canonical(server, "legal_entity", app2), employee, pki)
    )
    assert (status, body["error"]) == (403, "role_not_allowed")
    assert mailbox(server, "test.too2") is None


def _signer_row(r: Running, login: str) -> tuple[Any, ...]:
    from sqlalchemy import select

    from esam_mail.directory.models import Application

    async def go() -> tuple[Any, ...]:
        async with r.services.directory.transaction() as s:
            row = (await s.execute(select(Application).where(Application.requested_username == login))).scalar_one()
            return row.signer_role, row.poa_number, row.poa_date

    return r.lt.run(go())


def test_legal_entity_application_with_each_signer_role(server: Running, pki: t.DemoPki) -> None:
    """Issue 18 item 4: the signer's role is in the signed document, stored, and checked against
    the certificate: the head with a first-head certificate, a representative (power of
    attorney) with an employee's signing certificate of that BIN."""
    employee = t.legal_entity_cert(pki.intermediate, key=t.cached_key("rsa", 1), sign=True)
    head = legal_entity_raw("test.head")
    head["signer_role"] = "head"
    doc = canonical(server, "legal_entity", head)
    assert json.loads(doc)["application"]["signer_role"] == "head"
    status, body = apply(server, "legal_entity", head, cms_b64(doc, pki.head, pki))
    assert status == 201, body
    assert _signer_row(server, "test.head") == ("head", None, None)

    rep = legal_entity_raw("test.rep")
    rep.update(signer_role="representative", poa_number="Д-17/2026", poa_date="2026-01-15")
    doc = canonical(server, "legal_entity", rep)
    signed = json.loads(doc)["application"]
    assert (signed["signer_role"], signed["poa_number"], signed["poa_date"]) == (
        "representative", "Д-17/2026", "2026-01-15")
    status, body = apply(server, "legal_entity", rep, cms_b64(doc, pki.head, pki))
    assert (status, body["error"]) == (403, "role_not_allowed"), body  # a head's key, not an employee's
    assert "representative" in body["message"] and mailbox(server, "test.rep") is None
    status, body = apply(server, "legal_entity", rep, cms_b64(doc, employee, pki))
    assert status == 201, body
    assert _signer_row(server, "test.rep") == ("representative", "Д-17/2026", dt.date(2026, 1, 15))

    # the role is signed: a signature over the head's document does not pass as the representative's
    as_head = legal_entity_raw("test.rep2")
    as_rep = {**as_head, "signer_role": "representative", "poa_number": "1", "poa_date": "2026-01-15"}
    status, body = apply(server, "legal_entity", as_rep,
                         cms_b64(canonical(server, "legal_entity", as_head), employee, pki))
    assert (status, body["error"]) == (400, "bad_signature"), body
    # a representative without the power of attorney: 422 naming both fields, nothing written
    del as_rep["poa_number"], as_rep["poa_date"]
    status, body = apply(server, "legal_entity", as_rep, cms_b64(doc, employee, pki))
    assert status == 422 and {p["field"] for p in body["problems"]} == {"poa_number", "poa_date"}, body
    assert mailbox(server, "test.rep2") is None


def test_application_field_problems_are_422_with_every_field(server: Running) -> None:
    app = individual_raw()
    del app["mobile_phone"]
    status, body = apply(server, "individual", app, None, password="", accept_agreement=True)
    assert status == 422
    fields = {p["field"] for p in body["problems"]}
    assert {"mobile_phone", "signature", "password", "accept_agreement"} <= fields
    assert mailbox(server, "test.testov") is None


@pytest.mark.parametrize(("lang", "want"), [("ru", "Не заполнено поле «мобильный телефон»."), ("kk", "«ұялы телефон» өрісі толтырылмаған.")])
def test_field_problems_carry_text_in_the_readers_language(server: Running, lang: str, want: str) -> None:
    app = individual_raw()
    del app["mobile_phone"]
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}/api/v1/applications/canonical",
        data=json.dumps({"kind": "individual", "application": app}).encode(), method="POST",
        headers={"Content-Type": "application/json", "Accept-Language": lang},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    body = json.loads(e.value.read())
    problem = next(p for p in body["problems"] if p["field"] == "mobile_phone")
    assert problem["text"] == want and problem["message"] == "mobile phone is required"


def test_application_wrong_agreement_version(server: Running, pki: t.DemoPki) -> None:
    app = individual_raw()
    sig = cms_b64(canonical(server, "individual", app), pki.individual_sign, pki)
    status, body = apply(server, "individual", app, sig, accept_agreement="1999-1")
    assert status == 422 and [p["field"] for p in body["problems"]] == ["accept_agreement"]
    assert mailbox(server, "test.testov") is None


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("tampered", 400, "bad_signature"),
        ("other_iin", 403, "signer_mismatch"),
        ("auth_key", 400, "key_usage_not_allowed"),
        ("expired", 400, "certificate_expired"),
        ("untrusted", 400, "untrusted_certificate"),
        ("garbage", 400, "malformed_cms"),
    ],
)
def test_application_signature_refused(
    server: Running, pki: t.DemoPki, case: str, status: int, code: str
) -> None:
    app = individual_raw()
    data = canonical(server, "individual", app)
    now = dt.datetime.now(dt.UTC)
    if case == "tampered":
        sig = cms_b64(data, pki.individual_sign, pki)
        app["residence_address"]["house"] = "13"
    elif case == "other_iin":
        app = individual_raw(iin=OTHER_IIN)
        sig = cms_b64(canonical(server, "individual", app), pki.individual_sign, pki)
    elif case == "auth_key":
        sig = cms_b64(data, pki.individual, pki)
    elif case == "expired":
        old = t.individual_cert(pki.intermediate, key=t.cached_key("rsa", 2), sign=True,
                                not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1))  # fmt: skip
        sig = cms_b64(data, old, pki, signing_time=now - dt.timedelta(days=5))
    elif case == "untrusted":
        evil = t.root_ca("EVIL ROOT", key=t.cached_key("rsa", 950))
        forged = t.individual_cert(evil, key=t.cached_key("rsa", 2), sign=True)
        sig = base64.b64encode(t.sign_cms(data, forged.cert, forged.key, [evil.cert])).decode()
    else:
        sig = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    audits = len(server.lt.run(server.services.directory.audit_list(limit=1000)))
    got, body = apply(server, "individual", app, sig)
    assert (got, body["error"]) == (status, code), body
    assert body["message"] and "Traceback" not in body["message"]
    assert mailbox(server, app["username"]) is None
    events = server.lt.run(server.services.directory.audit_list(limit=1000))
    assert len(events) == audits + 1
    assert (events[0].action, events[0].outcome, events[0].detail["code"]) == (
        "registration.online",
        "denied",
        code,
    )


def test_username_taken_is_422(server: Running, pki: t.DemoPki) -> None:
    register(server, pki)
    other = t.individual_cert(pki.intermediate, iin=OTHER_IIN, key=t.cached_key("rsa", 2), sign=True)
    app = individual_raw(iin=OTHER_IIN)
    status, body = apply(server, "individual", app, cms_b64(canonical(server, "individual", app), other, pki))
    assert status == 422 and [p["field"] for p in body["problems"]] == ["username"]


# --------------------------------------------------------------------------- confirmation


def test_confirmation_flow(server: Running, pki: t.DemoPki) -> None:
    login = register(server, pki)
    creds = (login, PASSWORD)
    status, body, _ = call(server, "GET", "/api/v1/confirmations", auth=creds)
    assert status == 200 and body["confirmed"] is False
    status, ch, _ = call(server, "POST", "/api/v1/confirmations/challenge", auth=creds)
    assert status == 200 and ch["challenge"].startswith("esam-confirm:test.testov@esam.test:")
    expires = dt.datetime.fromisoformat(ch["expires_at"])
    assert dt.timedelta(seconds=250) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=300)
    cms = cms_b64(ch["challenge"].encode(), pki.individual, pki)
    status, done, _ = call(server, "POST", "/api/v1/confirmations", {"cms": cms}, auth=creds)
    assert status == 200, done
    assert done["confirmed"] is True and done["signer_iin"] == t.DEFAULT_IIN
    assert done["fingerprint"] == pki.individual.cert.fingerprint(t.hashes.SHA256()).hex()
    assert mailbox(server, login).eds_confirmed
    status, body, _ = call(server, "GET", "/api/v1/confirmations", auth=("test.testov@esam.test", PASSWORD))
    assert body["confirmed"] is True and body["latest"]["serial"] == done["serial"]
    # the same CMS again: a replay
    status, body, _ = call(
        server, "POST", "/api/v1/confirmations", {"cms": cms, "challenge": ch["challenge"]}, auth=creds
    )
    assert (status, body["error"]) == (409, "challenge_used")


def test_confirmation_refusals(server: Running, pki: t.DemoPki) -> None:
    login = register(server, pki)
    creds = (login, PASSWORD)
    _, ch, _ = call(server, "POST", "/api/v1/confirmations/challenge", auth=creds)
    content = ch["challenge"].encode()
    other = t.individual_cert(pki.intermediate, iin=OTHER_IIN, key=t.cached_key("rsa", 0))
    cases = [
        (cms_b64(content + b"!", pki.individual, pki), 400, "bad_signature"),
        (cms_b64(content, other, pki), 403, "signer_mismatch"),
    ]
    for cms, status, code in cases:
        got, body, _ = call(server, "POST", "/api/v1/confirmations", {"cms": cms}, auth=creds)
        assert (got, body["error"]) == (status, code), body
    assert not mailbox(server, login).eds_confirmed
    got, body, _ = call(server, "POST", "/api/v1/confirmations", {"cms": "%%%"}, auth=creds)
    assert got == 422 and body["problems"][0]["field"] == "cms"
    # the challenge survived the refusals; the same person's employee certificate names them by IIN
    got, body, _ = call(
        server, "POST", "/api/v1/confirmations", {"cms": cms_b64(content, pki.legal_entity, pki)}, auth=creds
    )
    assert got == 200 and body["signer_iin"] == t.DEFAULT_IIN and body["signer_bin"] == t.DEFAULT_BIN


def test_expired_challenge_over_http(server: Running, pki: t.DemoPki) -> None:
    from esam_mail.services.accounts.online import eds_services

    login = register(server, pki)
    _, ch, _ = call(server, "POST", "/api/v1/confirmations/challenge", auth=(login, PASSWORD))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=server.cfg.eds.challenge_ttl + 1)
    eds_services(server.services).confirmations.clock = lambda: later
    cms = cms_b64(ch["challenge"].encode(), pki.individual, pki)
    got, body, _ = call(server, "POST", "/api/v1/confirmations", {"cms": cms}, auth=(login, PASSWORD))
    assert (got, body["error"]) == (409, "challenge_expired")
    assert not mailbox(server, login).eds_confirmed


def test_confirmation_needs_the_mailbox_password(server: Running, pki: t.DemoPki) -> None:
    login = register(server, pki)
    for auth in (None, (login, "wrong password"), ("nobody", PASSWORD)):
        got, body, headers = call(server, "POST", "/api/v1/confirmations/challenge", auth=auth)
        assert (got, body["error"]) == (401, "unauthorized")
        assert headers["www-authenticate"].startswith("Basic ")
    got, _, _ = call(server, "GET", "/api/v1/confirmations")
    assert got == 401


def test_service_mailbox_cannot_be_confirmed(server: Running) -> None:
    server.add_mailbox("abuse", PASSWORD, kind="service")
    got, body, _ = call(server, "POST", "/api/v1/confirmations/challenge", auth=("abuse", PASSWORD))
    assert (got, body["error"]) == (409, "not_confirmable")


def test_without_trust_anchors_eds_is_unavailable(make_running: Any, pki: t.DemoPki) -> None:
    r = make_running(registration={"registry_policy": "accept"})
    app = individual_raw()
    status, body = apply(
        r, "individual", app, cms_b64(canonical(r, "individual", app), pki.individual_sign, pki)
    )
    assert (status, body["error"]) == (503, "eds_not_configured")
    assert mailbox(r, "test.testov") is None


# --------------------------------------------------------------------------- the page


def test_apply_page_and_script(server: Running) -> None:
    status, page, headers = call(server, "GET", "/apply")  # no Accept-Language: Kazakh
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = (ROOT / "conf" / "agreement.kk.txt").read_text()
    assert html.escape(text.strip().splitlines()[0]) in page and '<html lang="kk">' in page
    assert 'data-kind="individual"' in page and 'data-kind="legal_entity"' in page
    for field in ("bin", "registration.number", "legal_address.street", "actual_address.postcode", "iin",
                  "signer_role", "poa_number", "poa_date"):
        assert f'id="{field}"' in page and f'id="{field}-error"' in page, field
    assert f'data-version="{server.cfg.registration.agreement_version}"' in page
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "style-src 'self'" in headers["content-security-policy"]  # no inline style either
    # no external assets: every src/href is a path on this server
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page, re.IGNORECASE)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links), links
    assert '<script src="/static/apply.js">' in page and "<script>" not in page and "<style" not in page
    assert ' style="' not in page
    status, js, headers = call(server, "GET", "/static/apply.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert "/api/v1/applications/canonical" in js and "wss://127.0.0.1:13579" in js


def test_confirm_with_eds_in_the_account_page(server: Running, pki: t.DemoPki) -> None:
    """Para. 12 in the personal account: the challenge is on the page, a bad signature is
    refused next to the field in the reader's language, a good one confirms."""
    from tests.protocol.test_web_account import browser, login, token

    name = register(server, pki)
    with browser(server, "ru") as c:
        assert login(c, name, PASSWORD).status_code == 303
        page = c.get("/account/confirm").text
        challenge = html.unescape(re.search(r'id="challenge" value="([^"]+)"', page).group(1))  # type: ignore[union-attr]
        assert challenge.startswith(f"esam-confirm:{name}@esam.test:")
        wrong = cms_b64(challenge.encode() + b"x", pki.individual, pki)
        bad = c.post("/account/confirm", data={"csrf_token": token(page), "challenge": challenge, "cms": wrong})
        assert bad.status_code == 400 and 'id="cms-error"' in bad.text
        assert "подпись не соответствует подписанному содержимому" in bad.text
        assert not mailbox(server, name).eds_confirmed
        page = bad.text
        challenge = html.unescape(re.search(r'id="challenge" value="([^"]+)"', page).group(1))  # type: ignore[union-attr]
        good = cms_b64(challenge.encode(), pki.individual, pki)
        ok = c.post("/account/confirm", data={"csrf_token": token(page), "challenge": challenge, "cms": good})
        assert ok.status_code == 303 and ok.headers["location"] == "/account?done=confirmed"
        assert "подтверждён" in c.get("/account").text
    assert mailbox(server, name).eds_confirmed
