"""The operator's web in a real browser: Debian's headless Chromium driven by Selenium.

`esam serve` runs as a subprocess trusting the test PKI's root.  For Kazakh and Russian:

* ``/apply`` for an individual and for a legal entity: bad input first (every problem
  under its own field, in the page's language, nothing written), then the document the
  server gives is signed as NCALayer would (a detached CMS with the test SIGN key,
  pasted) and submitted; the mailbox works over IMAP at once;
* ``/account``: wrong password, log in (the session cookie changes at login: fixation),
  data on file, change the password (bad input, then good: the old password stops
  working over IMAP), close the mailbox (bad input, then good: export link, cooling-off);
* brute force: the lock-out message after too many wrong passwords.

``ESAM_WEB_SCREENSHOTS=<dir>`` saves phone-sized PNGs of the pages (docs/screenshots).
"""

from __future__ import annotations

import base64
import hashlib
import imaplib
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import eds_testing as t
from tests.conftest import ROOT
from tests.e2e.conftest import EsamProcess, tool
from tests.unit.eds_confirm.conftest import individual_raw, legal_entity_raw

pytestmark = pytest.mark.e2e

PASSWORD = "browser-Passw0rd-7"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--window-size=412,915",  # a phone screen
)
TEXT = {
    "kk": {"fill": "«ұялы телефон» өрісі толтырылмаған.", "digits": "дәл 12 цифрдан тұруы керек.", "differ": "Екі құпиясөз сәйкес емес.",
           "wrong": "Мекенжай немесе құпиясөз қате.", "locked": "Сәтсіз әрекеттер тым көп",
           "changed": "Құпиясөзіңіз өзгертілді.", "closes": "Жәшігіңіз", "history": "Кіру тарихы",
           "agree": "пайдаланушы келісімін", "current": "қазіргі құпиясөз қате"},
    "ru": {"fill": "Не заполнено поле «мобильный телефон».", "digits": "должен состоять ровно из 12 цифр.", "differ": "Пароли не совпадают.",
           "wrong": "Неверный адрес или пароль.", "locked": "Слишком много неудачных попыток",
           "changed": "Пароль изменён.", "closes": "Ваш ящик будет закрыт", "history": "История входов",
           "agree": "принять пользовательское соглашение", "current": "текущий пароль неверен"},
}


@pytest.fixture
def server(make_esam: Any, tmp_path: Path) -> EsamProcess:
    pki = t.default_pki()
    anchors = tmp_path / "root.pem"
    anchors.write_bytes(pki.root.pem)
    p: EsamProcess = make_esam(
        "srv", eds={"trust_anchors": [str(anchors)]}, registration={"registry_policy": "accept"},
        auth={"max_failures": 3, "lock_seconds": 120},
    )
    p.esam("init")
    p.start()
    return p


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[test]' installs selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = tool("chromium")
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=tool("chromedriver"), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    def __init__(self, driver: Any, server: EsamProcess, lang: str) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.d = driver
        self.base = f"http://127.0.0.1:{server.ports['http']}"
        self.lang = lang
        self.wait = WebDriverWait(driver, 20)

    def open(self, path: str) -> None:
        """Through the language switch, as a person would click it."""
        self.d.get(f"{self.base}/lang/{self.lang}?next={path}")
        assert self.d.find_element("css selector", "html").get_attribute("lang") == self.lang

    def by_id(self, element_id: str) -> Any:
        return self.d.find_element("id", element_id)

    def type(self, element_id: str, value: str) -> None:
        el = self.by_id(element_id)
        el.clear()
        if value:
            el.send_keys(value)

    def error(self, field: str) -> str:
        return str(self.by_id(f"{field}-error").text.strip())

    def shot(self, name: str) -> None:
        target = os.environ.get("ESAM_WEB_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            self.d.save_screenshot(str(Path(target) / f"{name}-{self.lang}.png"))

    def post_form(self, button: str) -> None:
        old = self.d.find_element("css selector", "html")
        self.by_id(button).click()
        self.wait.until(lambda d: old != d.find_element("css selector", "html"))


def fill(page: Page, app: dict[str, Any], prefix: str = "") -> None:
    from selenium.webdriver.support.ui import Select

    for key, value in app.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            fill(page, value, f"{name}.")
        elif page.by_id(name).tag_name == "select":
            Select(page.by_id(name)).select_by_value(value)
        else:
            page.type(name, value)


def paste(page: Page, element_id: str, text: str) -> None:
    """As a clipboard paste (typing 3 kB key by key is slow)."""
    page.d.execute_script("arguments[0].value = arguments[1];", page.by_id(element_id), text)


def imap_ok(server: EsamProcess, user: str, password: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=20)
    try:
        imap.login(user, password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            imap.logout()
        except Exception:
            pass


def apply_in_browser(page: Page, server: EsamProcess, kind: str, app: dict[str, Any], signer: Any) -> str:
    pki = t.default_pki()
    page.open("/apply")
    page.wait.until(lambda d: d.find_element("css selector", "form[data-ready='1']").is_displayed())
    page.by_id(f"kind-{kind}").click()
    first_line = (ROOT / "conf" / f"agreement.{page.lang}.txt").read_text().splitlines()[0]
    assert first_line in page.by_id("agreement").text  # the agreement in the reader's language

    # Bad input: an empty required field, a short IIN/BIN, different passwords, no consent.
    bad = json.loads(json.dumps(app))
    bad["mobile_phone"] = ""
    number = "iin" if kind == "individual" else "bin"
    bad[number] = "12345"
    fill(page, bad)
    page.type("password", PASSWORD)
    page.type("password2", PASSWORD + "x")
    page.by_id("prepare").click()
    page.wait.until(lambda d: page.error("mobile_phone"))
    assert page.error("mobile_phone") == TEXT[page.lang]["fill"]
    assert page.error(number).endswith(TEXT[page.lang]["digits"])  # ИИН/БИН ..., ЖСН/БСН ...
    assert page.by_id(number).get_attribute("aria-invalid") == "true"
    page.shot(f"apply-{kind}-errors")
    page.by_id("submit").click()
    page.wait.until(lambda d: page.error("password2"))
    assert page.error("password2") == TEXT[page.lang]["differ"]

    # Right input; the server still refuses without consent, next to the checkbox.
    fill(page, app)
    page.type("password2", PASSWORD)
    page.by_id("prepare").click()
    page.wait.until(lambda d: d.find_element("id", "canonical-b64").get_attribute("value"))
    data = base64.b64decode(page.by_id("canonical-b64").get_attribute("value"))
    signed = json.loads(data)
    assert signed["application"]["username"] == app["username"]
    edition = (ROOT / "conf" / f"agreement.{page.lang}.txt").read_bytes()
    assert signed["consent"]["language"] == page.lang  # the consent covers the edition shown
    assert signed["consent"]["agreement_sha256"] == hashlib.sha256(edition).hexdigest()
    cms = t.sign_cms(data, signer.cert, signer.key, [pki.intermediate.cert])
    paste(page, "cms", base64.b64encode(cms).decode())
    page.by_id("submit").click()
    page.wait.until(lambda d: page.error("accept_agreement"))
    assert TEXT[page.lang]["agree"] in page.error("accept_agreement")
    assert not (server.data / "mail" / app["username"]).exists()  # nothing half-written

    page.by_id("accept").click()
    page.by_id("submit").click()
    page.wait.until(lambda d: d.find_element("id", "result").get_attribute("data-address"))
    address = str(page.by_id("result").get_attribute("data-address"))
    assert address == f"{app['username']}@esam.test" and app["username"] in page.by_id("result").text
    page.shot(f"apply-{kind}-done")
    return address


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_apply_individual_and_legal_entity(server: EsamProcess, browser: Any, lang: str) -> None:
    pki = t.default_pki()
    page = Page(browser, server, lang)
    person = individual_raw(f"brauzer.{lang}")
    apply_in_browser(page, server, "individual", person, pki.individual_sign)
    assert imap_ok(server, person["username"], PASSWORD)  # para. 7: the chosen password works at once
    browser.delete_all_cookies()
    entity = legal_entity_raw(f"kompaniya.{lang}")
    apply_in_browser(page, server, "legal_entity", entity, pki.head)
    shown = json.loads(server.esam("mailbox", "show", entity["username"], "--json").stdout)
    assert shown["state"] == "active"


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_account_login_change_password_close(server: EsamProcess, browser: Any, lang: str) -> None:
    user = f"aigerim.{lang}"
    server.add_mailbox(user, PASSWORD)
    page = Page(browser, server, lang)
    page.open("/")
    page.shot("home")
    page.open("/account/login")
    before = browser.get_cookie("esam_session")
    page.type("username", user)
    page.type("password", "wrong-password")
    page.post_form("login")
    assert page.error("password") == TEXT[lang]["wrong"]
    assert page.by_id("username").get_attribute("value") == user
    page.shot("login-error")
    page.type("password", PASSWORD)
    page.post_form("login")
    assert browser.current_url.endswith("/account")
    after = browser.get_cookie("esam_session")
    assert before is not None and after is not None and after["value"] != before["value"]
    assert after["httpOnly"] and after["sameSite"] == "Lax"
    assert TEXT[lang]["history"] in browser.page_source and f"{user}@esam.test" in browser.page_source
    page.shot("account")

    # Change the password: every problem next to its field, then the right way.
    browser.get(f"{page.base}/account/password")
    page.type("current_password", "not-it")
    page.type("new_password", "short")
    page.type("new_password2", "other")
    page.post_form("change")
    assert TEXT[lang]["current"] in page.error("current_password").lower()
    assert page.error("new_password") and page.error("new_password2")
    page.shot("password-errors")
    assert imap_ok(server, user, PASSWORD)
    new = "Another-Horse-Battery-9"
    page.type("current_password", PASSWORD)
    page.type("new_password", new)
    page.type("new_password2", new)
    page.post_form("change")
    assert TEXT[lang]["changed"] in page.by_id("notice").text
    assert not imap_ok(server, user, PASSWORD) and imap_ok(server, user, new)

    # Close the mailbox: wrong input first, then export and the cooling-off date.
    browser.get(f"{page.base}/account/close")
    page.type("password", "nope")
    page.type("confirm_address", "someone@else.kz")
    page.post_form("close")
    assert page.error("password") and page.error("confirm_address")
    page.type("password", new)
    page.type("confirm_address", f"{user}@esam.test")
    page.post_form("close")
    assert TEXT[lang]["closes"] in page.by_id("closing").text
    assert page.by_id("export").get_attribute("href").endswith(".zip")
    page.shot("close")
    assert imap_ok(server, user, new)  # still open during the cooling-off period


def test_brute_force_lock_in_the_browser(server: EsamProcess, browser: Any) -> None:
    server.add_mailbox("bolat", PASSWORD)
    page = Page(browser, server, "ru")
    page.open("/account/login")
    for _ in range(3):
        page.type("username", "bolat")
        page.type("password", "guess")
        page.post_form("login")
    page.type("username", "bolat")
    page.type("password", PASSWORD)
    page.post_form("login")
    assert TEXT["ru"]["locked"] in page.error("password")
    assert "/account/login" in browser.current_url


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_two_step_login_and_app_password(server: EsamProcess, browser: Any, lang: str) -> None:
    import time

    import pyotp

    user = f"dana.{lang}"
    server.add_mailbox(user, PASSWORD)
    page = Page(browser, server, lang)
    page.open("/account/login")
    page.type("username", user)
    page.type("password", PASSWORD)
    page.post_form("login")
    browser.get(f"{page.base}/account/security")
    page.post_form("start-totp")
    secret = page.by_id("totp-secret").text
    assert page.by_id("qr").get_attribute("src").startswith("data:image/svg+xml")
    page.shot("security-setup")
    page.type("code", "000000")
    page.post_form("enable")
    assert page.error("code")  # a wrong code, next to the field
    page.type("code", pyotp.TOTP(secret).now())
    page.post_form("enable")
    codes = [li.text for li in browser.find_elements("css selector", "#recovery-codes code")]
    assert len(codes) == 10
    page.type("name", "Thunderbird")
    page.post_form("add-app")
    app_password = page.by_id("new-app-password").text
    page.shot("security-app-password")
    assert imap_ok(server, user, app_password) and not imap_ok(server, user, PASSWORD)

    page.post_form("logout")
    page.open("/account/login")
    page.type("username", user)
    page.type("password", PASSWORD)
    page.post_form("login")
    assert browser.current_url.endswith("/account/login/code")
    page.type("code", "123456")
    page.post_form("verify")
    assert page.error("code")
    page.shot("login-code")
    time.sleep(31 - time.time() % 30)  # the step used to turn TOTP on is spent: wait for the next
    page.type("code", pyotp.TOTP(secret).now())
    page.post_form("verify")
    assert browser.current_url.endswith("/account")
    page.post_form("logout")
    page.open("/account/login")  # a recovery code instead of the app
    page.type("username", user)
    page.type("password", PASSWORD)
    page.post_form("login")
    page.type("code", codes[0])
    page.post_form("verify")
    assert browser.current_url.endswith("/account")
