"""The hybrid gateway over real SMTP: paper@esam.test for authenticated subscribers only."""

from __future__ import annotations

import email
import email.policy
import io
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from reportlab.pdfgen.canvas import Canvas

from esam_mail.services.hybrid import is_valid_s10
from tests.protocol.harness import Running, client_tls

PASSWORD = "correct horse"

GOOD_BODY = """\
Кому: Серікбаев Асқар Нұрланұлы
Улица: ул. Абая
Дом: 12А
Кв.: 5
Населённый пункт: Алматы
Индекс: A01P3K4
---
Құрметті Асқар Нұрланұлы! Сәлем.
Уважаемый Аскар Нурланович, сообщаем вам о результатах.
"""

BAD_BODY = GOOD_BODY.replace("A01P3K4", "12345")


def pdf(pages: int = 1) -> bytes:
    buf = io.BytesIO()
    c = Canvas(buf, invariant=1)
    for i in range(pages):
        c.drawString(72, 72, f"attached page {i + 1}")
        c.showPage()
    c.save()
    return buf.getvalue()


def letter(body: str, *, attachment: bytes | None = None, to: str = "paper@esam.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@esam.test>"
    msg["To"] = to
    msg["Subject"] = "Хат / Письмо"
    msg["Message-ID"] = "<letter-1@esam.test>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


def submit(r: Running, msg: EmailMessage, rcpts: list[str] | None = None) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", r.ports["submissions"], context=client_tls(), timeout=30) as s:
        s.login("alice", PASSWORD)
        s.send_message(msg, from_addr="alice@esam.test", to_addrs=rcpts or ["paper@esam.test"])


def inbox(r: Running, login: str) -> list[email.message.EmailMessage]:
    root = r.cfg.store_path / login
    files = sorted((root / "new").iterdir()) + sorted((root / "cur").iterdir())
    out = []
    for f in files:
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert isinstance(m, email.message.EmailMessage)
        out.append(m)
    return out


def batch_items(r: Running) -> list[Path]:
    return sorted((r.cfg.data_dir / "hybrid" / "batches").glob("open/*/items/*.pdf"))


@pytest.fixture
def gw(running: Running) -> Running:
    running.add_mailbox("alice", PASSWORD)
    running.add_mailbox("bob", PASSWORD)
    return running


def test_good_letter_is_batched_and_sender_gets_tracking_number(gw: Running) -> None:
    submit(gw, letter(GOOD_BODY, attachment=pdf(2)))
    items = batch_items(gw)
    assert len(items) == 1
    tracking = items[0].stem
    assert is_valid_s10(tracking) and tracking.endswith("KZ")
    hybrid = gw.services.extras["hybrid"]
    [batch] = hybrid.post.batches.list(state="open")
    assert batch.items == 1 and batch.facility == "ALA01"
    assert [e.event for e in hybrid.post.events.history(tracking)] == ["ACCEPTED", "QUEUED_FOR_PRINT"]
    [notice] = inbox(gw, "alice")
    assert notice["X-Esam-Tracking"] == tracking
    assert notice["X-Esam-Hybrid-Event"] == "ACCEPTED"
    assert "paper@esam.test" in notice["From"]
    assert notice["In-Reply-To"] == "<letter-1@esam.test>"
    assert f"Трек-номер: {tracking}" in notice.get_content()
    assert inbox(gw, "bob") == []


def test_bad_letter_prints_nothing_and_sender_gets_fix_it_mail(gw: Running) -> None:
    with pytest.raises(smtplib.SMTPDataError) as info:
        submit(gw, letter(BAD_BODY))
    assert info.value.smtp_code == 550
    assert info.value.smtp_error.startswith(b"5.6.0") and b"postcode" in info.value.smtp_error
    assert batch_items(gw) == []
    assert gw.services.extras["hybrid"].post.batches.list() == []
    [fix] = inbox(gw, "alice")
    assert fix["X-Esam-Hybrid-Event"] == "REJECTED"
    text = fix.get_content()
    assert "postcode: '12345' is not a Kazakh postcode" in text
    assert "Postcode: A01P3K4" in text  # the format help


def test_unreadable_pdf_is_refused(gw: Running) -> None:
    with pytest.raises(smtplib.SMTPDataError) as info:
        submit(gw, letter(GOOD_BODY, attachment=b"%PDF-1.4 garbage, not a pdf"))
    assert info.value.smtp_code == 550 and b"invoice.pdf" in info.value.smtp_error
    assert batch_items(gw) == []
    [fix] = inbox(gw, "alice")
    assert "invoice.pdf" in fix.get_content()


def test_too_many_pages_is_refused(make_running, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = make_running(hybrid={"max_pages": 3})
    r.add_mailbox("alice", PASSWORD)
    with pytest.raises(smtplib.SMTPDataError) as info:
        submit(r, letter(GOOD_BODY, attachment=pdf(3)))
    assert info.value.smtp_code == 550 and b"pages" in info.value.smtp_error
    assert batch_items(r) == []
    assert len(inbox(r, "alice")) == 1


def test_bad_letter_with_other_recipients_is_250_but_not_printed(gw: Running) -> None:
    msg = letter(BAD_BODY)
    submit(gw, msg, rcpts=["paper@esam.test", "bob@esam.test"])  # no exception: 250
    assert batch_items(gw) == []
    assert len(inbox(gw, "bob")) == 1  # the ordinary copy
    [fix] = inbox(gw, "alice")
    assert fix["X-Esam-Hybrid-Event"] == "REJECTED"


def test_mx_cannot_use_the_gateway(gw: Running) -> None:
    s = smtplib.SMTP("127.0.0.1", gw.ports["smtp"], timeout=10)
    s.ehlo("peer.other.test")
    s.mail("bob@other.test")
    code, text = s.rcpt("paper@esam.test")
    assert code == 550 and text.startswith(b"5.7.1")
    s.quit()
    assert batch_items(gw) == []


def test_unauthenticated_submission_cannot_use_the_gateway(gw: Running) -> None:
    s = smtplib.SMTP("127.0.0.1", gw.ports["submission"], timeout=10)
    s.starttls(context=client_tls())
    s.ehlo("client")
    s.mail("alice@esam.test")
    code, _ = s.rcpt("paper@esam.test")
    assert code >= 500
    s.quit()


def test_disabled_gateway_is_an_unknown_user(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(hybrid={"enabled": False})
    r.add_mailbox("alice", PASSWORD)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        submit(r, letter(GOOD_BODY))
    assert "hybrid" not in r.services.extras


def test_rendering_does_not_block_the_event_loop(gw: Running) -> None:
    import threading
    import time

    hybrid = gw.services.extras["hybrid"]
    original = hybrid.post.accept_email
    started = threading.Event()

    def slow_accept(*args: object, **kw: object) -> object:
        started.set()
        time.sleep(2.0)  # a long render, in the worker thread
        return original(*args, **kw)

    hybrid.post.accept_email = slow_accept
    sender = threading.Thread(target=submit, args=(gw, letter(GOOD_BODY)))
    sender.start()
    try:
        assert started.wait(10)
        t0 = time.monotonic()
        s = smtplib.SMTP("127.0.0.1", gw.ports["smtp"], timeout=10)  # greeting needs the loop
        s.noop()
        s.quit()
        assert time.monotonic() - t0 < 1.0, "the SMTP server stalled while a letter was rendered"
        assert sender.is_alive(), "the render should still be running"
    finally:
        sender.join(30)
    assert len(batch_items(gw)) == 1
