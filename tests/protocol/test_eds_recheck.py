"""EDS confirmations are re-checked: a revoked (CRL or OCSP from a local test CA on
127.0.0.1) or expired certificate ends the confirmation, the official channel stops
delivering to that mailbox, and the holder finds a notice in their INBOX.  A forged or
unreachable responder changes nothing."""

from __future__ import annotations

import datetime as dt
import email
import threading
from collections.abc import Iterator
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests import eds_testing as t
from tests.conftest import write_config
from tests.protocol.harness import Running
from tests.protocol.test_official import _confirm, _register
from tests.unit.registration.conftest import db_url  # noqa: F401 - SQLite, then PostgreSQL

pytestmark = pytest.mark.protocol

IIN = t.DEFAULT_IIN


class Responder:
    """A CRL and OCSP responder of the test CA on 127.0.0.1 (real HTTP over a socket)."""

    def __init__(self) -> None:
        self.pki = t.default_pki()
        self.revoked = False
        self.forge = False
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                crl = t.crl(outer.pki.intermediate, [outer.pki.individual.cert] if outer.revoked else [])
                self._send(crl.public_bytes(serialization.Encoding.DER), "application/pkix-crl")

            def do_POST(self) -> None:
                outer.requests += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self._send(outer.ocsp_answer(ocsp.load_der_ocsp_request(body)), "application/ocsp-response")

            def _send(self, data: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def ocsp_answer(self, req: ocsp.OCSPRequest) -> bytes:
        pki = self.pki
        cert = pki.individual.cert
        assert req.serial_number == cert.serial_number
        now = dt.datetime.now(dt.UTC)
        status = ocsp.OCSPCertStatus.REVOKED if self.revoked else ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=pki.intermediate.cert, algorithm=hashes.SHA1(), cert_status=status,
            this_update=now - dt.timedelta(minutes=1), next_update=now + dt.timedelta(hours=1),
            revocation_time=now - dt.timedelta(hours=1) if self.revoked else None, revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, pki.intermediate.cert)
        key = t.cached_key("rsa", 7) if self.forge else pki.intermediate.key
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def responder() -> Iterator[Responder]:
    r = Responder()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Running]:  # noqa: F811
    from esam_mail import config

    anchor = tmp_path / "root.pem"
    anchor.write_bytes(t.to_pem(t.default_pki().root.cert))
    cfg = config.load(write_config(
        tmp_path, eds={"trust_anchors": [str(anchor)], "recheck_interval": 0}, directory={"url": db_url},
        registration={"registry_policy": "accept"}, official={"sweep_interval": 3600},
    ))
    r = Running(cfg)
    try:
        yield r
    finally:
        r.stop()


def _recheck(r: Running, clock: Any = None, **kw: Any) -> Any:
    from esam_mail.services.accounts.eds_recheck import EdsRecheck

    return EdsRecheck(r.services.directory, r.services.delivery.deliver_bounce, clock=clock, timeout=5, **kw)


def _send(r: Running) -> Any:
    off = r.services.extras["official"]
    sender = r.lt.run(off.sender(name="kgd")) or r.lt.run(off.add_sender(
        "kgd", "State Revenue Committee", cert_fingerprint="cd" * 32, actor=("sysadmin", "test")))
    return r.lt.run(off.submit(sender, recipient=f"IIN{IIN}", document=b"doc", filename="a.txt", subject="S"))


def _inbox_subjects(r: Running, login: str) -> list[str]:
    folder = r.services.store.user(login).folder("INBOX")
    folder.sync()
    return [str(make_header(decode_header(email.message_from_bytes(folder.read(m.uid))["Subject"])))
            for m in folder.messages()]


def _confirmed(r: Running, login: str) -> bool:
    return bool(r.lt.run(r.services.directory.get(login)).eds_confirmed)


@pytest.mark.parametrize("mode", ["crl", "ocsp"])
def test_revocation_ends_the_confirmation_stops_official_delivery_and_tells_the_holder(
    server: Running, responder: Responder, mode: str
) -> None:
    from esam_mail.services.official.channel import NoConfirmedMailbox

    r = server
    _register(r, "holder", IIN)
    _confirm(r, "holder")
    kw = {"crl_urls": [responder.url + "/ca.crl"]} if mode == "crl" else {"ocsp_url": responder.url}
    check = _recheck(r, revocation=mode, **kw)

    assert r.lt.run(check.run_once())["checked"] == 1
    assert _confirmed(r, "holder")
    assert _send(r).state == "delivered"  # still good

    responder.revoked = True
    before = responder.requests
    counts = r.lt.run(check.run_once())
    assert responder.requests > before  # it really asked over HTTP
    assert counts["revoked"] == 1
    assert not _confirmed(r, "holder")
    with pytest.raises(NoConfirmedMailbox):
        _send(r)
    notices = [s for s in _inbox_subjects(r, "holder") if "ЭЦП" in s]
    assert len(notices) == 1  # one notice, in Kazakh and Russian
    assert r.lt.run(check.run_once())["checked"] == 0  # lapsed ones are not checked again


def test_forged_or_unreachable_ocsp_changes_nothing(server: Running, responder: Responder) -> None:
    r = server
    _register(r, "holder", IIN)
    _confirm(r, "holder")
    responder.revoked = True
    responder.forge = True  # "revoked", but signed by a key that is not the CA's
    counts = r.lt.run(_recheck(r, revocation="ocsp", ocsp_url=responder.url).run_once())
    assert counts["unavailable"] == 1 and counts["revoked"] == 0
    assert _confirmed(r, "holder")
    counts = r.lt.run(_recheck(r, revocation="ocsp", ocsp_url="http://127.0.0.1:9/").run_once())
    assert counts["unavailable"] == 1
    assert _confirmed(r, "holder")


def test_expired_certificate_lapses_without_any_network(server: Running) -> None:
    r = server
    _register(r, "holder", IIN)
    _confirm(r, "holder")
    later = t.default_pki().individual.cert.not_valid_after_utc + dt.timedelta(days=1)
    counts = r.lt.run(_recheck(r, clock=lambda: later).run_once())
    assert counts["expired"] == 1
    assert not _confirmed(r, "holder")
    assert any("ЭЦП" in s for s in _inbox_subjects(r, "holder"))
    audits = r.lt.run(r.services.directory.audit_list(action="eds.lapse"))
    assert [a.detail["reason"] for a in audits] == ["expired"]
