"""The personal account over the real HTTP listener (uvicorn on the shared loop).

A browser-like client (httpx2 with a cookie jar) logs in with the mailbox password,
reads its data and history, changes the password (the old one stops working over IMAP
at once, other web sessions end), asks to close the mailbox (export first, cooling-off),
and is refused without a CSRF token, with a session planted before login (fixation) and
after too many wrong passwords (the lock-out shared with IMAP).
"""

from __future__ import annotations

import imaplib
import io
import re
import zipfile
from typing import Any

import httpx2 as httpx
import pytest

from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

PASSWORD = "correct horse"


@pytest.fixture
def site(make_running: Any) -> Running:
    r: Running = make_running(auth={"max_failures": 3, "lock_seconds": 60})
    r.add_mailbox("aigerim", PASSWORD)
    return r


def browser(r: Running, lang: str = "ru") -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{r.ports['http']}", timeout=30,
                        headers={"Accept-Language": lang, "Accept": "text/html"})


def token(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def login(c: httpx.Client, user: str = "aigerim", password: str = PASSWORD) -> httpx.Response:
    page = c.get("/account/login").text
    return c.post("/account/login", data={"csrf_token": token(page), "username": user, "password": password})


def imap_login(r: Running, password: str) -> bool:
    imap = imaplib.IMAP4_SSL("127.0.0.1", r.ports["imaps"], ssl_context=client_tls(), timeout=20)
    try:
        imap.login("aigerim", password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            imap.logout()
        except Exception:
            pass


def test_login_shows_data_and_history_with_protocols(site: Running) -> None:
    with browser(site) as c:
        assert c.get("/account").headers["location"] == "/account/login"
        assert imap_login(site, PASSWORD)
        resp = login(c)
        assert resp.status_code == 303 and resp.headers["location"] == "/account"
        cookie = resp.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        page = c.get("/account").text
        assert "aigerim@esam.test" in page and "История входов" in page
        rows = re.findall(r"<tr><td>[0-9-]+ [0-9:]+</td><td>127\.0\.0\.1</td><td>([A-Z]+)</td></tr>", page)
        assert "WEB" in rows and "IMAP" in rows, rows


def test_wrong_password_message_next_to_field_and_lockout(site: Running) -> None:
    with browser(site, "kk") as c:
        resp = login(c, password="wrong")
        assert resp.status_code == 400
        assert 'id="password-error"' in resp.text and "Мекенжай немесе құпиясөз қате." in resp.text
        assert 'value="aigerim"' in resp.text  # what was typed stays
        empty = c.post("/account/login", data={"csrf_token": token(resp.text), "username": "", "password": ""})
        assert 'id="username-error"' in empty.text and 'id="password-error"' in empty.text
        for _ in range(3):
            resp = login(c, password="wrong")
        resp = login(c)  # the right password, but this address is locked now
        assert resp.status_code == 400 and "Сәтсіз әрекеттер тым көп" in resp.text
    assert not imap_login(site, PASSWORD)  # the same lock-out as IMAP


def test_forms_need_the_csrf_token(site: Running) -> None:
    with browser(site) as c:
        c.get("/account/login")
        resp = c.post("/account/login", data={"username": "aigerim", "password": PASSWORD})
        assert resp.status_code == 403 and "Срок действия формы истёк" in resp.text
        assert login(c).status_code == 303
        resp = c.post("/account/password", data={"current_password": PASSWORD, "new_password": "x" * 12,
                                                 "new_password2": "x" * 12})
        assert resp.status_code == 403
    assert imap_login(site, PASSWORD)  # nothing changed


def test_session_fixation_planted_cookie_is_useless_after_login(site: Running) -> None:
    with browser(site) as attacker:
        attacker.get("/account/login")
        planted = next(ck for ck in attacker.cookies.jar if ck.name == "esam_session")
    with browser(site) as victim:
        victim.cookies.jar.set_cookie(planted)  # e.g. set through a sibling subdomain
        assert login(victim).status_code == 303
        after = [ck.value for ck in victim.cookies.jar if ck.name == "esam_session"]
        assert after and planted.value not in after
        assert victim.get("/account").status_code == 200
    with browser(site) as attacker:
        attacker.cookies.jar.set_cookie(planted)
        assert attacker.get("/account").status_code == 303  # the planted session is still logged out


def test_change_password_ends_other_sessions_and_imap_uses_the_new_one(site: Running) -> None:
    with browser(site) as c, browser(site) as other:
        assert login(c).status_code == 303 and login(other).status_code == 303
        page = c.get("/account/password").text
        bad = c.post("/account/password", data={"csrf_token": token(page), "current_password": "nope",
                                                "new_password": "short", "new_password2": "different"})
        assert bad.status_code == 400
        for field in ("current_password", "new_password", "new_password2"):
            assert f'id="{field}-error"' in bad.text, field
        assert "Пароль должен содержать не менее 10 символов" in bad.text, bad.text
        assert imap_login(site, PASSWORD)  # nothing half-written
        ok = c.post("/account/password", data={"csrf_token": token(bad.text), "current_password": PASSWORD,
                                               "new_password": "new battery staple", "new_password2": "new battery staple"})
        assert ok.status_code == 303 and ok.headers["location"] == "/account?done=password"
        assert "Пароль изменён" in c.get(ok.headers["location"]).text  # this session goes on
        assert other.get("/account").status_code == 303  # the other one ended
    assert not imap_login(site, PASSWORD) and imap_login(site, "new battery staple")
    # the holder is told in the INBOX (services/accounts/notices.py, issue 16)
    new = site.cfg.store_path / "aigerim" / "new"
    assert any(b"X-Esam-Notice: password_changed" in f.read_bytes() for f in new.iterdir())


def test_close_mailbox_exports_first_then_cooling_off_and_cancel(site: Running) -> None:
    site.services.store.user("aigerim").deliver(b"Subject: hi\r\nFrom: a@b.kz\r\n\r\nbody\r\n")
    with browser(site) as c:
        login(c)
        page = c.get("/account/close").text
        bad = c.post("/account/close", data={"csrf_token": token(page), "password": "nope",
                                             "confirm_address": "someone@else"})
        assert bad.status_code == 400 and 'id="password-error"' in bad.text and 'id="confirm_address-error"' in bad.text
        assert site.lt.run(site.services.directory.get("aigerim")).state == "active"
        resp = c.post("/account/close", data={"csrf_token": token(bad.text), "password": PASSWORD,
                                              "confirm_address": "Aigerim@esam.test"})
        assert resp.status_code == 303
        page = c.get("/account/close").text
        assert "Ваш ящик будет закрыт" in page
        link = re.search(r'href="(/account/export/[^"]+)"', page)
        assert link
        archive = zipfile.ZipFile(io.BytesIO(c.get(link.group(1)).content))
        assert any(n.startswith("INBOX/") for n in archive.namelist())
        assert b"Subject: hi" in archive.read(next(n for n in archive.namelist() if n.startswith("INBOX/")))
        assert c.get("/account/export/..%2F..%2Fdirectory.db").status_code == 404
        # not due yet: nothing closes
        assert site.lt.run(site.services.extras["account"].close_due()) == []
        page = c.get("/account/close").text
        c.post("/account/close/cancel", data={"csrf_token": token(page)})
        assert site.lt.run(site.services.extras["account"].closure("aigerim@esam.test")) is None
    assert imap_login(site, PASSWORD)


def test_closure_takes_effect_after_the_cooling_off(make_running: Any) -> None:
    r: Running = make_running(web={"close_cooling_days": 0})
    r.add_mailbox("aigerim", PASSWORD)
    with browser(r) as c:
        login(c)
        page = c.get("/account/close").text
        c.post("/account/close", data={"csrf_token": token(page), "password": PASSWORD,
                                       "confirm_address": "aigerim@esam.test"})
    assert r.lt.run(r.services.extras["account"].close_due()) == ["aigerim@esam.test"]
    assert r.lt.run(r.services.directory.get("aigerim")).state == "closed"
    assert not imap_login(r, PASSWORD)


def test_my_hybrid_letters_with_status_events(site: Running) -> None:
    from tests.protocol.test_hybrid_gateway import GOOD_BODY, letter

    msg = letter(GOOD_BODY)
    msg.replace_header("From", "aigerim@esam.test")
    import smtplib

    with smtplib.SMTP_SSL("127.0.0.1", site.ports["submissions"], context=client_tls(), timeout=30) as s:
        s.login("aigerim", PASSWORD)
        s.send_message(msg, from_addr="aigerim@esam.test", to_addrs=["paper@esam.test"])
    with browser(site) as c:
        login(c)
        page = c.get("/account").text
        tracking = re.search(r"<code>([A-Z]{2}\d{9}[A-Z]{2})</code>", page)
        assert tracking, page[page.find('id="hybrid"'):][:800]
        assert 'data-status="QUEUED_FOR_PRINT"' in page and "ожидает печати" in page
        assert "принято" in page  # the ACCEPTED event is listed too
    hybrid = site.services.extras["hybrid"]
    from esam_mail.services.hybrid import HybridEvent

    hybrid.post.batches.close_all()  # the facility takes the batch to print
    site.lt.run(hybrid.record_event(tracking.group(1), HybridEvent.PRINTED, actor="facility:ALA01"))
    with browser(site, "kk") as c:
        login(c)
        page = c.get("/account").text
        assert 'data-status="PRINTED"' in page and "басып шығарылды" in page
