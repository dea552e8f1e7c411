"""Two-step login (TOTP) and app passwords over the real listeners.

With TOTP on: the web asks for a code after the password (a step or recovery code is
accepted once; wrong codes lock), and IMAP and SMTP refuse the main password but accept
an app password made in the account.
"""

from __future__ import annotations

import re
import smtplib
import time
from typing import Any

import pyotp
import pytest

from tests.protocol.harness import Running, client_tls
from tests.protocol.test_web_account import PASSWORD, browser, imap_login, login, token

pytestmark = pytest.mark.protocol


@pytest.fixture
def site(make_running: Any) -> Running:
    r: Running = make_running(auth={"max_failures": 4, "lock_seconds": 60})
    r.add_mailbox("aigerim", PASSWORD)
    return r


def smtp_login(r: Running, password: str) -> bool:
    with smtplib.SMTP_SSL("127.0.0.1", r.ports["submissions"], context=client_tls(), timeout=20) as s:
        try:
            s.login("aigerim", password)
            return True
        except smtplib.SMTPAuthenticationError:
            return False


def enable_totp(c: Any) -> tuple[str, list[str]]:
    page = c.get("/account/security").text
    c.post("/account/security/totp/start", data={"csrf_token": token(page)})
    page = c.get("/account/security").text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
    assert 'src="data:image/svg+xml' in page  # the QR code, as a data: URI (CSP img-src data:)
    bad = c.post("/account/security/totp/enable", data={"csrf_token": token(page), "code": "000000"})
    assert bad.status_code == 400 and 'id="code-error"' in bad.text
    done = c.post("/account/security/totp/enable", data={"csrf_token": token(page),
                                                         "code": pyotp.TOTP(secret).now()})
    codes = re.findall(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>", done.text)
    assert len(codes) == 10 and "Двухэтапный вход включён" in done.text
    return secret, codes


def test_totp_login_recovery_codes_and_replay(site: Running) -> None:
    with browser(site) as c:
        assert login(c).status_code == 303
        secret, codes = enable_totp(c)
        c.post("/account/logout", data={"csrf_token": token(c.get("/account").text)})
        resp = login(c)
        assert resp.headers["location"] == "/account/login/code"
        assert c.get("/account").status_code == 303  # the password alone gives nothing
        page = c.get("/account/login/code").text
        wrong = c.post("/account/login/code", data={"csrf_token": token(page), "code": "123456"})
        assert wrong.status_code == 400 and "Код неверен или уже использован." in wrong.text
        ok = c.post("/account/login/code", data={"csrf_token": token(page), "code": codes[0]})
        assert ok.status_code == 303 and c.get("/account").status_code == 200
        c.post("/account/logout", data={"csrf_token": token(c.get("/account").text)})
        login(c)
        page = c.get("/account/login/code").text
        again = c.post("/account/login/code", data={"csrf_token": token(page), "code": codes[0]})
        assert again.status_code == 400  # a recovery code works once
        later = time.time() + 30  # the next step (the current one was spent turning TOTP on)
        site.services.authenticator.second_factor.clock = lambda: later
        code = pyotp.TOTP(secret).at(later)
        assert c.post("/account/login/code", data={"csrf_token": token(page), "code": code}).status_code == 303
        c.post("/account/logout", data={"csrf_token": token(c.get("/account").text)})
        login(c)
        page = c.get("/account/login/code").text
        replay = c.post("/account/login/code", data={"csrf_token": token(page), "code": code})
        assert replay.status_code == 400  # a TOTP step works once


def test_wrong_codes_lock(site: Running) -> None:
    with browser(site) as c:
        login(c)
        secret, _ = enable_totp(c)
        c.post("/account/logout", data={"csrf_token": token(c.get("/account").text)})
        login(c)
        page = c.get("/account/login/code").text
        for _ in range(4):
            c.post("/account/login/code", data={"csrf_token": token(page), "code": "999999"})
        later = time.time() + 30
        site.services.authenticator.second_factor.clock = lambda: later
        locked = c.post("/account/login/code", data={"csrf_token": token(page), "code": pyotp.TOTP(secret).at(later)})
        assert locked.status_code == 400 and "Слишком много неудачных попыток" in locked.text


def test_imap_and_smtp_take_app_passwords_only_while_totp_is_on(site: Running) -> None:
    assert imap_login(site, PASSWORD) and smtp_login(site, PASSWORD)  # cached now
    with browser(site) as c:
        login(c)
        enable_totp(c)
        assert not imap_login(site, PASSWORD) and not smtp_login(site, PASSWORD)
        page = c.get("/account/security").text
        empty = c.post("/account/security/app-passwords", data={"csrf_token": token(page), "name": " "})
        assert empty.status_code == 400 and 'id="name-error"' in empty.text
        made = c.post("/account/security/app-passwords", data={"csrf_token": token(page), "name": "Thunderbird"})
        app_password = re.search(r'id="new-app-password">([a-z2-9-]+)<', made.text).group(1)  # type: ignore[union-attr]
        assert imap_login(site, app_password) and smtp_login(site, app_password)
        assert not imap_login(site, PASSWORD)
        page = c.get("/account/security").text
        assert "Thunderbird" in page and app_password not in page  # shown once only
        app_id = re.search(r'/account/security/app-passwords/(\d+)/delete', page).group(1)  # type: ignore[union-attr]
        c.post(f"/account/security/app-passwords/{app_id}/delete", data={"csrf_token": token(page)})
        assert not imap_login(site, app_password)
