"""The /apply page in a real browser: Debian's headless Chromium driven by Selenium.

`esam serve` runs as a subprocess trusting the test PKI's root.  The browser fills the
individual's form, accepts the agreement, asks the server for the canonical bytes; the
test checks that they are the bytes the canonical endpoint gives for the same
application, signs them with a test SIGN certificate (as NCALayer would), pastes the
Base64 CMS and submits.  Afterwards the mailbox exists (``esam mailbox show``), its
Maildir is on disk, and IMAP login with the chosen password works.
"""

from __future__ import annotations

import base64
import imaplib
import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esam_mail.services import eds_testing as t
from tests.conftest import ROOT
from tests.e2e.conftest import EsamProcess, tool
from tests.unit.eds_confirm.conftest import individual_raw

pytestmark = pytest.mark.e2e

PASSWORD = "browser-Passw0rd"
USERNAME = "brauzer.testov"
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
    "--window-size=1200,2400",
)


@pytest.fixture
def server(make_esam: Any, tmp_path: Path) -> EsamProcess:
    pki = t.default_pki()
    anchors = tmp_path / "root.pem"
    anchors.write_bytes(pki.root.pem)
    p: EsamProcess = make_esam(
        "srv", eds={"trust_anchors": [str(anchors)]}, registration={"registry_policy": "accept"}
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


def canonical_b64(server: EsamProcess, app: dict[str, Any], language: str | None = None) -> str:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}/api/v1/applications/canonical",
        data=json.dumps({"kind": "individual", "application": app, "language": language}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        return str(json.loads(resp.read())["base64"])


def fill(driver: Any, app: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for key, value in app.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                field = driver.find_element(By.ID, f"{key}.{sub}")
                if field.tag_name == "select":
                    Select(field).select_by_value(v)
                else:
                    field.clear()
                    field.send_keys(v)
        else:
            field = driver.find_element(By.ID, key)
            field.clear()
            field.send_keys(value)
    for pid in ("password", "password2"):
        driver.find_element(By.ID, pid).send_keys(PASSWORD)


def paste(driver: Any, element: Any, text: str) -> None:
    """Put ``text`` into a text area as a clipboard paste does (typing 3 kB key by key is slow)."""
    driver.execute_script(
        "arguments[0].value = arguments[1];arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        element,
        text,
    )


def test_apply_in_browser_then_imap_login(server: EsamProcess, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    pki = t.default_pki()
    wait = WebDriverWait(browser, 20)
    browser.get(f"http://127.0.0.1:{server.ports['http']}/apply")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "form[data-ready='1']")))
    first_line = next(ln for ln in (ROOT / "conf" / "agreement.txt").read_text().splitlines() if ln.strip())
    assert first_line.strip() in browser.find_element(By.ID, "agreement").text

    app = individual_raw(USERNAME)
    fill(browser, app)
    browser.find_element(By.ID, "accept").click()

    # Submitting before preparing the document is refused by the page itself.
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "errors").text.strip())
    assert "prepare" in browser.find_element(By.ID, "errors").text

    browser.find_element(By.ID, "prepare").click()
    wait.until(lambda d: d.find_element(By.ID, "canonical-b64").get_attribute("value"))
    shown = browser.find_element(By.ID, "canonical-b64").get_attribute("value")
    # The page asked for exactly the bytes the API gives for this application, in its language.
    language = browser.find_element(By.ID, "canonical").get_attribute("data-language")
    assert language in ("kk", "ru", "en")
    assert shown == canonical_b64(server, app, language)
    data = base64.b64decode(shown)
    assert json.loads(data)["application"]["username"] == USERNAME
    assert json.loads(data)["consent"]["language"] == language
    assert browser.find_element(By.ID, "canonical").text.strip() == data.decode()

    # A CMS over other bytes is refused by the server, and the page says why.
    wrong = t.sign_cms(
        data + b" ", pki.individual_sign.cert, pki.individual_sign.key, [pki.intermediate.cert]
    )
    cms_box = browser.find_element(By.ID, "cms")
    paste(browser, cms_box, base64.b64encode(wrong).decode())
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: "bad_signature" in d.find_element(By.ID, "errors").text)
    assert not (server.data / "mail" / USERNAME).exists()

    # What NCALayer would return: a detached CMS over the canonical bytes, SIGN key.
    cms = t.sign_cms(data, pki.individual_sign.cert, pki.individual_sign.key, [pki.intermediate.cert])
    paste(browser, cms_box, base64.b64encode(cms).decode())
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-address"))
    result = browser.find_element(By.ID, "result")
    assert result.get_attribute("data-address") == f"{USERNAME}@esam.test"
    assert result.get_attribute("data-status") == "active"
    assert browser.find_element(By.ID, "errors").text.strip() == ""

    # The mailbox exists in the directory and on disk ...
    shown_box = json.loads(server.esam("mailbox", "show", USERNAME, "--json").stdout)
    assert shown_box["address"] == f"{USERNAME}@esam.test" and shown_box["state"] == "active"
    assert (server.data / "mail" / USERNAME).is_dir()
    # ... and the chosen password works over IMAP at once (para. 7).
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=20)
    try:
        typ, _ = imap.login(USERNAME, PASSWORD)
        assert typ == "OK"
        typ, _ = imap.select("INBOX")
        assert typ == "OK"
    finally:
        imap.logout()
