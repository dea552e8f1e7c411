"""A first start is quiet: `esam init` and `esam serve`, with Python's warnings shown
(PYTHONWARNINGS=default shows DeprecationWarning too), print no warning from setuptools,
aiosmtpd, Twisted or anything else, also once SMTP, STARTTLS and IMAP have been used."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
from pathlib import Path

import pytest

from tests.e2e.conftest import EsamProcess

pytestmark = pytest.mark.e2e


def test_init_and_serve_print_no_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    p = EsamProcess(tmp_path)
    init = p.esam("init")
    p.start()
    try:
        ctx = ssl.create_default_context(cafile=str(p.cert))
        ctx.check_hostname = False
        with smtplib.SMTP("127.0.0.1", p.ports["submission"], timeout=30) as s:
            s.ehlo("client.test")
            s.starttls(context=ctx)
            s.ehlo("client.test")
        with smtplib.SMTP("127.0.0.1", p.ports["smtp"], timeout=30) as s:
            s.ehlo("peer.test")
        imap = imaplib.IMAP4_SSL("127.0.0.1", p.ports["imaps"], ssl_context=ctx, timeout=30)
        imap.logout()
    finally:
        assert p.stop() == 0
    out = init.stdout + init.stderr + p.log.read_text()
    noisy = [line for line in out.splitlines() if "Warning" in line or "warnings.warn" in line]
    assert not noisy, "\n".join(noisy)
