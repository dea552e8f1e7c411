"""Notices in the subscriber's INBOX and a clear answer to a suspended holder (issue 16, item 4).

A running server; `esam register / passwd / mailbox suspend|close` (``main()`` in process, on
the same config) send the notices; IMAP and SMTP on real sockets show what a suspended holder
is told.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
from email.message import EmailMessage
from typing import Any

import pytest

from tests.conftest import add_staff
from tests.protocol.harness import Running, client_tls
from tests.protocol.test_hybrid_paper_path import PASSWORD, Env
from tests.unit.registration.test_cli import FLAGS, OFFICE

pytestmark = pytest.mark.protocol


def notices(env: Env, login: str) -> dict[str, EmailMessage]:
    out = {}
    root = env.r.cfg.store_path / login
    for f in sorted((root / "new").iterdir()):
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert isinstance(m, EmailMessage)
        if m["X-Esam-Notice"]:
            out[str(m["X-Esam-Notice"])] = m
    return out


@pytest.fixture
def env(make_running: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Env:
    r = make_running(registration={"registry_policy": "accept"})
    add_staff(r.cfg.directory_url, "e-17", "supervisor", "ALA01")
    monkeypatch.setenv("ESAM_LANG", "en")
    return Env(r, capsys, monkeypatch)


def register(env: Env, *extra: str) -> str:
    rc, out, err = env.cli("register", "individual", *FLAGS, *OFFICE, *extra, "--password-stdin",
                           stdin=PASSWORD + "\n")
    assert rc == 0, err
    return out


def test_welcome_in_kazakh_by_default_with_client_settings(env: Env) -> None:
    out = register(env)
    assert "asem@esam.test is registered. The holder was notified by e-mail." in out  # staff-facing
    welcome = notices(env, "asem")["welcome"]
    assert welcome["Content-Language"] == "kk" and welcome["Auto-Submitted"] == "auto-generated"
    assert str(welcome["Subject"]) == "Сіздің asem@esam.test пошта жәшігіңіз дайын"
    body = welcome.get_content()
    assert "Кіріс пошта (IMAP): mx.esam.test, порт 993, SSL/TLS" in body
    assert "Шығыс пошта (SMTP): mx.esam.test, порт 587 STARTTLS немесе 465 SSL/TLS" in body
    assert "Құрметті Ахметова Әсем," in body


def test_notices_in_russian_for_a_russian_speaking_subscriber(env: Env) -> None:
    register(env, "--language", "ru")
    rc, out, err = env.cli("passwd", "asem", "--password-stdin", stdin="Another-Good-Pass-9\n")
    assert rc == 0, err
    assert "The password of asem@esam.test is changed. The holder was notified by e-mail." in out
    got = notices(env, "asem")
    assert str(got["welcome"]["Subject"]) == "Ваш почтовый ящик asem@esam.test готов"
    changed = got["password_changed"]
    assert str(changed["Subject"]) == "Пароль вашего почтового ящика изменён"
    assert "Если это сделали не вы, немедленно обратитесь в службу поддержки" in changed.get_content()


def test_suspension_notice_has_the_reason_and_how_to_appeal(env: Env) -> None:
    register(env, "--language", "ru")
    rc, out, err = env.cli("mailbox", "suspend", "asem", "--reason", "рассылка спама")
    assert rc == 0, err
    assert "asem@esam.test is suspended (reason: рассылка спама); the holder cannot log in." in out
    body = notices(env, "asem")["suspended"].get_content()
    assert "Причина: рассылка спама" in body and "Чтобы обжаловать решение, напишите на support@esam.test" in body
    env.monkeypatch.setenv("ESAM_LANG", "kk")
    rc, out, _ = env.cli("mailbox", "close", "asem")
    assert rc == 0 and "жабылды; бұл мекенжай енді ешқашан берілмейді" in out  # the employee's language
    assert "Этот адрес никогда не будет выдан никому другому." in notices(env, "asem")["closed"].get_content()


def test_suspended_holder_is_told_why_over_imap_and_smtp(env: Env) -> None:
    register(env)
    assert env.cli("mailbox", "suspend", "asem", "--reason", "spam")[0] == 0
    r: Running = env.r
    m = imaplib.IMAP4_SSL("127.0.0.1", r.ports["imaps"], ssl_context=client_tls(), timeout=30)
    with pytest.raises(imaplib.IMAP4.error) as info:
        m.login("asem", PASSWORD)
    assert b"[CONTACTADMIN]" in str(info.value).encode() and "suspended" in str(info.value)
    with pytest.raises(imaplib.IMAP4.error) as info:
        m.login("asem", "a wrong password")  # a guesser learns nothing
    assert "[AUTHENTICATIONFAILED]" in str(info.value) and "suspended" not in str(info.value)
    m.logout()
    with smtplib.SMTP_SSL("127.0.0.1", r.ports["submissions"], context=client_tls(), timeout=30) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as sinfo:
            s.login("asem", PASSWORD)
        assert sinfo.value.smtp_code == 525 and sinfo.value.smtp_error.startswith(b"5.7.13")
    with smtplib.SMTP_SSL("127.0.0.1", r.ports["submissions"], context=client_tls(), timeout=30) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as sinfo:
            s.login("asem", "a wrong password")
        assert sinfo.value.smtp_code == 535
