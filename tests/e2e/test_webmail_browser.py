"""The webmail in Debian's headless Chromium (Selenium), in Kazakh and Russian.

`esam serve` runs as a subprocess next to a real Postfix (tests/e2e/postfix.py), the
MX of other.test, to which our outbound queue relays.  For each language:

* swaks delivers a message with an HTML part, a remote image and an attachment to our MX;
* the subscriber logs in at /account/login (the same session as the personal account),
  opens /mail: the message is listed as unread; opening it shows the sanitised HTML with
  the remote image blocked, and IMAP (imaplib over TLS) sees it \\Seen at once;
* a message written in the browser (with a bad recipient first: the reason under the
  field, in the page's language, nothing sent) arrives at Postfix's mailbox DKIM-signed,
  and its copy is in Sent over IMAP.

``ESAM_WEB_SCREENSHOTS=<dir>`` saves the phone-sized pages (docs/screenshots/mail-*).
"""

from __future__ import annotations

import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EsamProcess, tool
from tests.e2e.postfix import POSTFIX, PostfixPeer, free_port, wait_for
from tests.e2e.test_web_browser import Page, browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.e2e

PASSWORD = "webmail-Passw0rd-7"
TEXT = {
    "kk": {"inbox": "Кіріс", "blocked": "сыртқы суреттер бұғатталды", "no_user": "Мұндай пошта жәшігі жоқ",
           "sent": "Хат жіберілді.", "sent_folder": "Жіберілгендер"},
    "ru": {"inbox": "Входящие", "blocked": "Удалённые изображения заблокированы", "no_user": "Такого почтового ящика нет",
           "sent": "Письмо отправлено.", "sent_folder": "Отправленные"},
}


@pytest.fixture
def pair(make_esam: Any) -> Iterator[tuple[EsamProcess, PostfixPeer]]:
    if not os.access(POSTFIX, os.X_OK):
        pytest.fail("postfix is not installed: run `bash scripts/test.sh`, which installs it")
    if os.geteuid() != 0:
        pytest.fail("this test starts a Postfix instance, which needs root (as CI runs)")
    mx_port = free_port()
    postfix = PostfixPeer(["carol"], esam_mx_port=mx_port)
    esam: EsamProcess = make_esam(
        listen={"smtp": f"127.0.0.1:{mx_port}"},
        outbound={"transport": {"other.test": f"127.0.0.1:{postfix.port}"}, "retry_base": 1, "retry_max": 2},
    )
    esam.esam("init")
    try:
        postfix.start()
        esam.start()
        yield esam, postfix
    finally:
        postfix.cleanup()


def imap_flags(server: EsamProcess, user: str, folder: str = "INBOX") -> list[str]:
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=20)
    try:
        conn.login(user, PASSWORD)
        conn.select(folder, readonly=True)
        _typ, data = conn.fetch("1:*", "(FLAGS)")
        return [d.decode() for d in data if isinstance(d, bytes)]
    finally:
        conn.logout()


def swaks_html(server: EsamProcess, rcpt: str, subject: str, tmp: Path) -> None:
    """A multipart/alternative message with a tracking pixel and a script, plus a PDF."""
    body = tmp / f"{subject}.eml"
    body.write_text(
        f"From: Dana <dana@other.test>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        "--OUT\r\nContent-Type: multipart/alternative; boundary=ALT\r\n\r\n"
        "--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain text\r\n"
        "--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<p id="mail-body-text">Сәлем! Привет!</p><img src="https://tracker.example/p.gif">'
        "<script>document.title='pwned'</script>\r\n--ALT--\r\n"
        "--OUT\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQgcmVwb3J0\r\n--OUT--\r\n",
        encoding="utf-8",
    )
    import subprocess

    res = subprocess.run([tool("swaks"), "--server", f"127.0.0.1:{server.ports['smtp']}", "--from",
                          "dana@other.test", "--to", rcpt, "--data", str(body), "--suppress-data"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_read_and_send_in_the_browser(pair: tuple[EsamProcess, PostfixPeer], browser: Any,  # noqa: F811
                                      lang: str, tmp_path: Path) -> None:
    server, postfix = pair
    user = f"aigerim.{lang}"
    server.add_mailbox(user, PASSWORD)
    subject = f"Hello {lang}"
    swaks_html(server, f"{user}@esam.test", subject, tmp_path)
    page = Page(browser, server, lang)

    page.open("/account/login")
    page.type("username", user)
    page.type("password", PASSWORD)
    page.post_form("login")
    browser.get(f"{page.base}/mail")
    assert TEXT[lang]["inbox"] in page.by_id("folder-title").text
    row = browser.find_element("css selector", "#messages li.unseen")
    assert subject in row.text
    assert "\\Seen" not in imap_flags(server, user)[0]
    page.shot("mail-list")

    old = browser.find_element("css selector", "html")
    row.find_element("css selector", "a").click()
    page.wait.until(lambda d: old != d.find_element("css selector", "html"))
    assert page.by_id("subject").text == subject
    assert "Сәлем! Привет!" in page.by_id("body").text
    assert TEXT[lang]["blocked"] in page.by_id("images-blocked").text
    assert browser.find_elements("css selector", "#body script") == [] and browser.title != "pwned"
    imgs = browser.find_elements("css selector", "#body img")
    assert imgs and all("tracker.example" not in (i.get_attribute("src") or "") for i in imgs)  # never asked
    assert "report.pdf" in page.by_id("attachments").text
    assert "\\Seen" in imap_flags(server, user)[0]  # IMAP sees the web's read at once
    page.shot("mail-read")

    # Write to the Postfix peer: an unknown local recipient first, then the right one.
    page.by_id("compose").click()
    page.wait.until(lambda d: d.find_element("id", "compose-form"))
    page.type("to", "nobody@esam.test")
    page.type("subject", f"From the web {lang}")
    page.type("body", "Сәлем, Кэрол! Привет!")
    page.post_form("send")
    assert TEXT[lang]["no_user"] in page.error("to")
    assert page.by_id("body").get_attribute("value").startswith("Сәлем, Кэрол!")  # kept
    page.shot("mail-compose-error")
    page.type("to", "carol@other.test")
    page.post_form("send")
    assert TEXT[lang]["sent"] in page.by_id("notice").text
    assert TEXT[lang]["sent_folder"] in page.by_id("folder-title").text
    assert len(imap_flags(server, user, "Sent")) == 1

    got = wait_for(lambda: [m for m in postfix.messages("carol") if f"From the web {lang}".encode() in m], timeout=60)
    assert got, postfix.log()
    head = got[0].split(b"\n\n", 1)[0]
    assert re.search(rb"(?mi)^From: .*<?aigerim\." + lang.encode() + rb"@esam\.test>?", head)
    assert b"DKIM-Signature:" in head
