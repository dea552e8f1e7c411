"""Official documents end to end on real sockets: a state body sends to a confirmed IIN,
gets DELIVERED, the holder reads it over IMAP (imaplib, STARTTLS-less implicit TLS port),
and RETRIEVED follows; an unconfirmed IIN gets a clear refusal with REJECTED evidence.

The server is the real ``app.Server`` with the real registration and EDS confirmation
(test PKI from ``tests.eds_testing``), so the mailbox is confirmed the way a
subscriber confirms it.
"""

from __future__ import annotations

import email
import imaplib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import eds_testing as t
from tests.conftest import write_config
from tests.protocol.harness import Running, client_tls
from tests.unit.registration.conftest import db_url  # noqa: F401 - SQLite, then PostgreSQL

pytestmark = pytest.mark.protocol

PASSWORD = "correct horse battery"
OTHER_IIN = "850525400017"  # valid checksum, never confirmed
STATE_BODY_BIN = t.DEFAULT_BIN


def _individual(username: str, iin: str) -> dict[str, Any]:
    from tests.unit.eds_confirm.conftest import individual_raw

    return individual_raw(username=username, iin=iin)


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Running]:  # noqa: F811
    from esam_mail import config

    pki = t.default_pki()
    anchor = tmp_path / "root.pem"
    anchor.write_bytes(t.to_pem(pki.root.cert))
    cfg = config.load(write_config(
        tmp_path, eds={"trust_anchors": [str(anchor)]}, directory={"url": db_url},
        registration={"registry_policy": "accept"},
        official={"sweep_interval": 3600},  # RETRIEVED must come from the notification
    ))
    r = Running(cfg)
    try:
        yield r
    finally:
        r.stop()


def _register(r: Running, username: str, iin: str) -> Any:
    from esam_mail.services.accounts.registration import RegistrationService

    reg = RegistrationService(r.services.directory, r.services.store, r.services.hasher, r.cfg)
    return r.lt.run(reg.register_individual(
        _individual(username, iin), channel="office", office_code="ALA01", employee_id="e-1",
        accepted_agreement=r.cfg.registration.agreement_version, password=PASSWORD,
    ))


def _confirm(r: Running, username: str) -> None:
    from esam_mail.services.accounts.confirmation import ConfirmationService, verifier_from_config

    pki = t.default_pki()
    conf = ConfirmationService(r.services.directory, verifier_from_config(r.cfg))
    challenge = r.lt.run(conf.issue(username))
    cms = t.sign_cms(challenge.content, pki.individual.cert, pki.individual.key, [pki.intermediate.cert])
    r.lt.run(conf.confirm(username, cms))


def _official(r: Running) -> Any:
    return r.services.extras["official"]


def _sender(r: Running, notify: str | None = None) -> Any:
    return r.lt.run(_official(r).add_sender(
        "kgd", "State Revenue Committee", bin=STATE_BODY_BIN, cert_fingerprint="ab" * 32,
        notify_address=notify, actor=("sysadmin", "test"),
    ))


def _events(r: Running, message_id: str) -> list[str]:
    return [e["event"] for e in r.lt.run(_official(r).evidence(message_id))]


def _wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_confirmed_iin_gets_delivered_then_retrieved_after_an_imap_read(server: Running) -> None:
    r = server
    _register(r, "test.testov", t.DEFAULT_IIN)
    _confirm(r, "test.testov")
    r.add_mailbox("kgd.office")  # the state body's own mailbox for evidence mail
    sender = _sender(r, notify="kgd.office@esam.test")
    pki = t.default_pki()
    document = b"%PDF-1.4\n% tax notice\n"
    cms = t.sign_cms(document, pki.head.cert, pki.head.key, [pki.intermediate.cert])

    sub = r.lt.run(_official(r).submit(
        sender, recipient=f"IIN{t.DEFAULT_IIN}", document=document, filename="notice.pdf",
        subject="Tax notice 2026", signature=cms,
    ))
    assert sub.state == "delivered"
    assert [e["event"] for e in sub.evidence] == ["SUBMITTED", "DELIVERED"]
    assert sub.evidence[1]["recipient"]["address"] == "test.testov@esam.test"

    c = imaplib.IMAP4_SSL("127.0.0.1", r.ports["imaps"], ssl_context=client_tls(), timeout=10)
    try:
        c.login("test.testov", PASSWORD)
        c.select("INBOX")
        typ, data = c.search(None, "UNSEEN")
        assert typ == "OK" and data[0].split() == [b"1"]
        assert _events(r, sub.message_id) == ["SUBMITTED", "DELIVERED"]  # not read yet
        # PEEK does not read it (RFC 3501 6.4.5): still no RETRIEVED
        c.fetch("1", "(BODY.PEEK[HEADER])")
        typ, data = c.fetch("1", "(BODY[])")
        assert typ == "OK"
        raw = next(p[1] for p in data if isinstance(p, tuple))
    finally:
        c.logout()
    msg = email.message_from_bytes(raw)
    assert msg["X-Esam-Official-Id"] == sub.message_id
    names = sorted(p.get_filename() for p in msg.walk() if p.get_filename())
    assert names == ["notice.pdf", "notice.pdf.p7s"]
    attached = next(p for p in msg.walk() if p.get_filename() == "notice.pdf").get_payload(decode=True)
    assert attached == document

    _wait_for(lambda: _events(r, sub.message_id) == ["SUBMITTED", "DELIVERED", "RETRIEVED"])

    # the chain verifies offline with only the operator's certificate
    from cryptography import x509

    from esam_mail.services.official.evidence import verify_chain

    chain = r.lt.run(_official(r).chain(sub.message_id))
    cert = x509.load_pem_x509_certificate(r.cfg.operator_cert.read_bytes())
    assert [x["event"] for x in verify_chain(json.loads(json.dumps(chain)), cert)] == [
        "SUBMITTED", "DELIVERED", "RETRIEVED"]

    # the sender got the evidence by e-mail too: DELIVERED and RETRIEVED
    def mails() -> list[str]:
        folder = r.services.store.user("kgd.office").folder("INBOX")
        folder.sync()
        return [email.message_from_bytes(folder.read(m.uid))["Subject"] for m in folder.messages()]

    _wait_for(lambda: len(mails()) == 2)
    subjects = mails()
    assert any("RETRIEVED" in s for s in subjects) and any("DELIVERED" in s for s in subjects)


def test_unconfirmed_iin_is_refused_clearly_with_rejected_evidence(server: Running) -> None:
    from esam_mail.services.official.channel import NoConfirmedMailbox

    r = server
    _register(r, "no.eds", OTHER_IIN)  # has a mailbox, but never confirmed with EDS
    sender = _sender(r)
    with pytest.raises(NoConfirmedMailbox) as info:
        r.lt.run(_official(r).submit(sender, recipient=f"IIN{OTHER_IIN}", document=b"x",
                                     filename="a.txt", subject="Notice"))
    exc = info.value
    assert exc.code == "no_confirmed_mailbox"
    assert "paper" in exc.public and OTHER_IIN in exc.public
    assert _events(r, exc.message_id) == ["SUBMITTED", "REJECTED"]
    folder = r.services.store.user("no.eds").folder("INBOX")
    folder.sync()
    assert folder.messages() == []  # nothing was delivered


# ------------------------------------------------------------------ the HTTP API


class _Msg:
    """What http-message-signatures signs: method, url, headers."""

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers


def _signed(url: str, method: str, key: Any, key_id: str, body: bytes | None = None) -> Any:
    import urllib.request

    from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

    headers = {"Content-Type": "application/json"} if body is not None else {}
    msg = _Msg(method, url, headers)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: key}))
    signer.sign(msg, key_id=key_id, covered_component_ids=("@method", "@target-uri"), body=body)
    return urllib.request.Request(url, data=body, headers=msg.headers, method=method)


def _call(req: Any) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_signed_request_delivers_and_serves_evidence_only_to_its_sender(server: Running) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    r = server
    _register(r, "test.testov", t.DEFAULT_IIN)
    _confirm(r, "test.testov")
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    r.lt.run(_official(r).add_sender("akimat", "Akimat of Almaty", public_key_pem=pem, actor=("sysadmin", "t")))
    base = f"http://127.0.0.1:{r.ports['http']}/api/v1/official"
    body = json.dumps({"recipient": f"IIN{t.DEFAULT_IIN}", "subject": "Decision", "filename": "decision.pdf",
                       "document": base64.b64encode(b"%PDF decision").decode()}).encode()

    status, data = _call(_signed(base + "/messages", "POST", key, "akimat", body))
    assert status == 201, data
    assert [e["event"] for e in data["evidence"]] == ["SUBMITTED", "DELIVERED"]
    assert data["evidence"][0]["document"]["signed_by"] == "gateway"  # no CMS given: the operator signed

    status, chain = _call(_signed(base + f"/messages/{data['id']}/evidence", "GET", key, "akimat"))
    assert status == 200 and chain["format"] == "esam-evidence-chain/1" and len(chain["records"]) == 2

    # another registered sender cannot read it
    other_pem = other.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    r.lt.run(_official(r).add_sender("kgd2", "Other body", public_key_pem=other_pem, actor=("sysadmin", "t")))
    assert _call(_signed(base + f"/messages/{data['id']}/evidence", "GET", other, "kgd2"))[0] == 404

    # a wrong key, a changed body, no signature: 401; nothing delivered
    assert _call(_signed(base + "/messages", "POST", other, "akimat", body))[0] == 401
    forged = _signed(base + "/messages", "POST", key, "akimat", body)
    forged.data = body.replace(b"Decision", b"Fine!!!!")
    assert _call(forged)[0] == 401
    import urllib.request

    plain = urllib.request.Request(base + "/messages", data=body, method="POST")
    status, err = _call(plain)
    assert status == 401 and err["error"] == "sender_authentication_failed"

    # unconfirmed IIN: 409, the evidence id, and the evidence is there
    body2 = json.dumps({"recipient": f"IIN{OTHER_IIN}", "subject": "S", "filename": "a.txt",
                        "document": base64.b64encode(b"x").decode()}).encode()
    status, err = _call(_signed(base + "/messages", "POST", key, "akimat", body2))
    assert status == 409 and err["error"] == "no_confirmed_mailbox" and "paper" in err["message"]
    status, chain = _call(_signed(base + f"/messages/{err['id']}/evidence", "GET", key, "akimat"))
    assert [x["event"] for x in chain["records"]] == ["SUBMITTED", "REJECTED"]

    # bad input names the field
    bad = json.dumps({"recipient": "IIN1", "subject": "S", "filename": "a", "document": "AA=="}).encode()
    status, err = _call(_signed(base + "/messages", "POST", key, "akimat", bad))
    assert status == 422 and err["problems"][0]["field"] == "recipient"
