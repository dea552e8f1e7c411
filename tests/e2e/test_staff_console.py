"""The staff console (/staff) in Debian's headless Chromium driven by Selenium.

`esam serve` runs as a subprocess; staff accounts are made with `esam staff add` (their
TOTP secrets come from its output) and a subscriber is registered at a post office with
`esam register`.  Then, in Russian:

* a wrong TOTP code is refused; the post-office employee signs in, finds the subscriber by
  IIN, sees no suspend/close buttons and is refused the audit log (403, audited);
* the supervisor finds the subscriber by name, suspends the mailbox with a reason (the
  mailbox stops working over IMAP), then resumes it;
* the auditor reads the audit log: the suspension with its reason, by the supervisor at
  their office, and the employee's refused attempt.
"""

from __future__ import annotations

import imaplib
import json
import ssl
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.e2e.conftest import EsamProcess
from tests.e2e.test_web_browser import Page, browser  # noqa: F401 - the Chromium fixture
from tests.unit.registration.test_cli import FLAGS

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
STAFF_PASSWORD = "a long staff password"
IIN = "850525400017"  # FLAGS' applicant: Ахметова Әсем, login asem
LEGAL = {
    "name": "ТОО «Ромашка»", "bin": "150340001236", "registration.number": "12345-1910-ТОО",
    "registration.date": "2015-03-10", "legal_address.locality": "Астана", "legal_address.street": "пр. Мәңгілік Ел",
    "legal_address.house": "55", "legal_address.postcode": "010000", "actual_address.locality": "Астана",
    "actual_address.street": "ул. Кенесары", "actual_address.house": "7", "actual_address.postcode": "010000",
    "work_phone": "+7 7172 55 55 55", "mobile_phone": "+7 777 000 11 22", "username": "romashka",
}  # fmt: skip


def _staff(p: EsamProcess, username: str, role: str, office: str | None) -> str:
    extra = ["--office", office] if office else []
    out = p.esam("staff", "add", username, "--name", f"Сотрудник {username}", "--role", role, *extra,
                 "--password-stdin", "--json", input=STAFF_PASSWORD + "\n").stdout
    return str(json.loads(out)["totp_secret"])


@pytest.fixture
def console(make_esam: Any) -> tuple[EsamProcess, dict[str, str]]:
    p: EsamProcess = make_esam("srv", registration={"registry_policy": "accept"})
    p.esam("init")
    secrets = {"e-17": _staff(p, "e-17", "employee", "ALA01"), "super": _staff(p, "super", "supervisor", "ALA01"),
               "aud": _staff(p, "aud", "auditor", None)}
    p.esam("register", "individual", *FLAGS, "--office", "ALA01", "--employee", "e-17",
           "--accept-agreement", "2026-1", "--password-stdin", input=PASSWORD + "\n")
    p.start()
    return p, secrets


def _imap_ok(p: EsamProcess) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", p.ports["imaps"], ssl_context=ctx, timeout=10)
    try:
        m.login("asem", PASSWORD)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def _get_with_session(page: Page, path: str) -> bytes:
    import urllib.request

    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.d.get_cookies())
    req = urllib.request.Request(page.base + path, headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/pdf"
        return bytes(resp.read())


def _pdf_text(pdf: bytes) -> str:
    import io

    from pypdf import PdfReader

    return "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def _login(page: Page, username: str, code: str) -> None:
    page.open("/staff/login")
    page.type("username", username)
    page.type("password", STAFF_PASSWORD)
    page.type("totp", code)
    page.post_form("staff-login")


def _logout(page: Page) -> None:
    page.post_form("staff-logout")


def _search(page: Page, q: str) -> list[str]:
    page.type("q", q)
    page.post_form("search")
    return [a.text for a in page.d.find_elements("css selector", "#results a.result")]


def test_staff_console_roles_search_suspend_and_audit(console: tuple[EsamProcess, dict[str, str]],
                                                     browser: Any) -> None:  # noqa: F811
    p, secrets = console
    page = Page(browser, p, "ru")
    ids = lambda: {e.get_attribute("id") for e in page.d.find_elements("css selector", "[id]")}  # noqa: E731

    # a wrong code: refused, in Russian
    now = pyotp.TOTP(secrets["super"]).now()
    _login(page, "super", "000000" if now != "000000" else "111111")
    assert "Неверное имя пользователя, пароль или код." in page.d.page_source

    # the post-office employee: search by IIN, no state buttons, no audit log
    _login(page, "e-17", pyotp.TOTP(secrets["e-17"]).now())
    assert "Поиск" in page.d.page_source and "employee · ALA01" in page.by_id("who").text
    assert _search(page, IIN) == ["asem@esam.test"]
    page.d.find_element("css selector", "#results a.result").click()
    page.wait.until(lambda d: d.find_elements("id", "state"))
    assert page.by_id("state").text == "active"
    assert not {"suspend", "close", "state-form"} & ids()
    assert "nav-audit" not in ids()
    # the paper application: the pre-filled form prints as a PDF, the signed scan is kept
    pdf = _get_with_session(page, "/staff/mailbox/asem/application.pdf")
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    assert "Ахметова" in text and IIN in text and "asem@esam.test" in text and "Подпись заявителя" in text
    scan = Path(p.tmp) / "signed.pdf"
    scan.write_bytes(pdf)  # stands in for the scanner's file
    page.by_id("scan").send_keys(str(scan))
    page.post_form("upload-scan")
    assert page.by_id("done")
    kept = list((p.data / "applications").glob("*.pdf"))
    assert len(kept) == 1 and kept[0].read_bytes() == scan.read_bytes()
    # a paper application of a legal entity entered at the counter: a bad BIN is shown under its field
    page.open("/staff")
    page.by_id("nav-register").click()
    page.wait.until(lambda d: d.find_elements("id", "kind-legal_entity"))
    page.by_id("kind-legal_entity").click()
    page.wait.until(lambda d: d.find_elements("id", "bin"))
    for name, value in LEGAL.items():
        page.type(name, value)
    page.type("bin", "150340001237")
    page.by_id("accept_agreement").click()
    page.post_form("register")
    assert page.error("bin") == "БИН недействителен: не совпадает контрольная цифра."
    assert page.by_id("name").get_attribute("value") == LEGAL["name"]  # what was typed stays
    page.type("bin", LEGAL["bin"])
    page.by_id("accept_agreement").click()
    page.post_form("register")
    assert page.by_id("new-address").text == "romashka@esam.test"
    assert _get_with_session(page, "/staff/mailbox/romashka/application.pdf").startswith(b"%PDF-")
    page.d.get(page.base + "/staff/audit")
    assert "403" in page.d.title or "403" in page.d.page_source
    page.d.get(page.base + "/staff/batches")  # nor hybrid batches
    assert "403" in page.d.title or "403" in page.d.page_source
    page.open("/staff")
    _logout(page)

    # the supervisor: find by name, suspend with a reason (IMAP stops), resume
    _login(page, "super", pyotp.TOTP(secrets["super"]).now())
    page.by_id("nav-batches").click()
    page.wait.until(lambda d: d.find_elements("id", "batches"))
    assert page.by_id("no-batches").text == "Пакетов нет."
    page.open("/staff")
    assert _search(page, "Ахметова") == ["asem@esam.test"]
    assert _imap_ok(p)
    page.d.find_element("css selector", "#results a.result").click()
    page.wait.until(lambda d: d.find_elements("id", "suspend"))
    page.post_form("suspend")  # no reason: refused next to the field
    assert "Укажите причину." in page.d.page_source and page.by_id("state").text == "active"
    page.type("reason", "заявление владельца № 17")
    page.post_form("suspend")
    assert page.by_id("state").text == "suspended"
    assert not _imap_ok(p)
    page.type("reason", "владелец вернулся")
    page.post_form("resume")
    assert page.by_id("state").text == "active"
    assert _imap_ok(p)
    _logout(page)

    # the auditor: the log shows who, where, why; and the refused attempt
    _login(page, "aud", pyotp.TOTP(secrets["aud"]).now())
    page.open("/staff/mailbox/asem")
    assert "print-form" not in ids()  # an auditor does not handle applications
    page.by_id("nav-audit").click()
    page.wait.until(lambda d: d.find_elements("id", "audit"))
    rows = [[c.text for c in r.find_elements("css selector", "td")]
            for r in page.d.find_elements("css selector", "#audit tbody tr")]
    suspended = [r for r in rows if r[2] == "mailbox.suspended"]
    assert suspended and suspended[0][1] == "staff:super@ALA01" and suspended[0][5] == "заявление владельца № 17"
    assert any(r[2] == "audit.read" and r[1] == "staff:e-17@ALA01" and r[4] == "denied" for r in rows)
    assert any(r[2] == "staff.login" and r[4] == "denied" for r in rows)  # the wrong code
    assert any(r[2] == "application.scan" and r[1] == "staff:e-17@ALA01" for r in rows)
    assert any(r[2] == "mailbox.register" and "romashka@esam.test" in r and "e-17" in r[1] for r in rows)
    shots = Path(p.tmp) / "staff-audit.png"
    page.d.save_screenshot(str(shots))
