"""HybridPost: the facade the SMTP gateway and the CLI call."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from esam_mail.services.hybrid import (
    AddressError,
    DocumentError,
    FacilityMap,
    HybridConfig,
    HybridEvent,
    HybridPost,
)

from .conftest import LETTER, make_pdf


def _msg(body: str, *attachments: bytes) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "aigul@pochta.kz"
    m["To"] = "hybrid@pochta.kz"
    m["Subject"] = "Хат / Письмо"
    m["Message-ID"] = "<orig@pochta.kz>"
    m.set_content(body)
    for i, a in enumerate(attachments):
        m.add_attachment(a, maintype="application", subtype="pdf", filename=f"doc{i}.pdf")
    return m


def test_accept_then_events_then_close(tmp_path: Path) -> None:
    hp = HybridPost(HybridConfig(tmp_path, "hybrid@pochta.kz",
                                 facilities=FacilityMap({"A": "ALA"}, "MAIN")))
    acc = hp.accept_email(_msg(LETTER, make_pdf(2)), sender="aigul@pochta.kz")
    assert acc.rendered.pages == 3 and acc.batch_id.startswith("ALA-")
    (notice,) = acc.notices
    assert notice["To"] == "aigul@pochta.kz" and acc.tracking_number in notice["Subject"]
    assert notice["In-Reply-To"] == "<orig@pochta.kz>"
    assert hp.events.current(acc.tracking_number) is HybridEvent.QUEUED_FOR_PRINT
    job = hp.batches.close(acc.batch_id)
    m = json.loads((job / "manifest.json").read_text())
    assert m["items"][0]["tracking_number"] == acc.tracking_number
    _, n = hp.record_event(acc.tracking_number, HybridEvent.PRINTED, actor="facility:ALA")
    assert n is not None and "Напечатано" in n["Subject"]
    _, n = hp.record_event(acc.tracking_number, HybridEvent.HANDED_TO_POST, actor="facility:ALA")
    assert n is None


def test_bad_address_uses_no_number_bad_attachment_is_rejected(tmp_path: Path) -> None:
    hp = HybridPost(HybridConfig(tmp_path, "hybrid@pochta.kz"))
    with pytest.raises(AddressError):
        hp.accept_email(_msg("Hello\n\nno address"), sender="a@pochta.kz")
    first = hp.allocator.peek()
    with pytest.raises(DocumentError):
        hp.accept_email(_msg(LETTER, b"%PDF-1.4 broken"), sender="a@pochta.kz")
    assert first is not None and hp.events.current(first) is HybridEvent.REJECTED


def test_format_flowed_body_is_unflowed(tmp_path: Path) -> None:
    from esam_mail.services.hybrid.service import unflow

    assert unflow("Құрметті \nАсқар!\n\nЖаңа абзац\n-- \nқолы") == (
        "Құрметті Асқар!\n\nЖаңа абзац\n-- \nқолы")
    assert unflow("ab \ncd", delsp=True) == "abcd"
