"""SIGHUP to `esam serve`: new certificate on every TLS listener, reloadable keys applied."""

from __future__ import annotations

import hashlib
import imaplib
import os
import signal
import smtplib
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esam_mail import tls
from tests.conftest import write_config

pytestmark = pytest.mark.e2e


def ctx() -> ssl.SSLContext:
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def fp(der: bytes | None) -> str:
    assert der
    return hashlib.sha256(der).hexdigest()


def served(ports: dict[str, int]) -> dict[str, str]:
    """Fingerprint of the certificate each TLS listener presents to a new connection."""
    out = {}
    for name in ("submissions", "imaps"):
        with socket.create_connection(("127.0.0.1", ports[name]), timeout=10) as raw, \
                ctx().wrap_socket(raw) as s:
            out[name] = fp(s.getpeercert(binary_form=True))
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as sm:
        sm.starttls(context=ctx())
        out["submission"] = fp(sm.sock.getpeercert(binary_form=True))  # type: ignore[union-attr]
    im = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10)
    im.starttls(ssl_context=ctx())
    out["imap"] = fp(im.sock.getpeercert(binary_form=True))  # type: ignore[attr-defined]
    im.logout()
    return out


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def replace_cert(data: Path, tmp: Path, name: str) -> str:
    """Write a new cert/key pair over the dev certificate; returns its fingerprint."""
    cert, key = tmp / f"{name}.cert.pem", tmp / f"{name}.key.pem"
    tls.ensure_dev_certificate(cert, key, f"{name}.esam.test")
    os.replace(key, data / "tls" / "key.pem")
    os.replace(cert, data / "tls" / "cert.pem")
    der = ssl.PEM_cert_to_DER_cert((data / "tls" / "cert.pem").read_text())
    return fp(der)


def autoconfig_host(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/mail/config-v1.1.xml", timeout=10) as r:
        return r.read()


def test_sighup_reloads_certificates_and_config(make_esam: Any, tmp_path: Path) -> None:
    p = make_esam(public={"imap_host": "imap-old.esam.test"})
    p.esam("init")
    p.start()
    old = served(p.ports)
    assert len(set(old.values())) == 1
    assert b"imap-old.esam.test" in autoconfig_host(p.ports["http"])

    new_fp = replace_cert(p.data, tmp_path, "renewed")
    assert new_fp not in old.values()
    write_config(p.tmp, public={"imap_host": "imap-new.esam.test"}, smtp={"max_recipients": 7},
                 auth={"cache_seconds": 5})
    assert p.proc is not None
    p.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: set(served(p.ports).values()) == {new_fp}, "the new certificate on every listener")
    assert b"imap-new.esam.test" in autoconfig_host(p.ports["http"])
    log = wait_for(lambda: "server.reloaded" in p.log.read_text() and p.log.read_text(), "the reload log line")
    assert "public.imap_host" in log and "auth.cache_seconds" in log
    assert "server.reload_needs_restart" in log and "smtp.max_recipients" in log

    # a key that does not match its certificate is refused; the running pair stays
    other = tmp_path / "other"
    other.mkdir()
    tls.ensure_dev_certificate(other / "c.pem", other / "k.pem", "other.esam.test")
    os.replace(other / "k.pem", p.data / "tls" / "key.pem")
    p.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "server.reload_failed" in p.log.read_text(), "the refused reload")
    assert p.proc.poll() is None
    assert set(served(p.ports).values()) == {new_fp}
    assert p.stop() == 0
