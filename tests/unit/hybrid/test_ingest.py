"""Paper -> e-mail: scan validation and the MIME message."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from esam_mail.services.hybrid.errors import DocumentError, HybridInputError
from esam_mail.services.hybrid.ingest import build_scanned_letter_message, validate_scan

from .conftest import encrypted_pdf, make_pdf


def test_message_carries_the_scan_byte_identical() -> None:
    pdf = make_pdf(2)
    msg = build_scanned_letter_message(
        pdf, tracking_number="rr123456785kz", subscriber_address="aigul@pochta.kz",
        hybrid_address="hybrid@pochta.kz", sender_name="ТОО «Әділет»",
        received_at=datetime(2026, 11, 26, 9, 30, tzinfo=UTC),
    )
    raw = msg.as_bytes(policy=policy.SMTP)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["To"] == "aigul@pochta.kz"
    assert parsed["From"].addresses[0].addr_spec == "hybrid@pochta.kz"
    assert parsed["From"].addresses[0].display_name == "ТОО «Әділет»"
    assert "RR123456785KZ" in parsed["Subject"]
    assert parsed["Message-ID"].endswith("@pochta.kz>")
    assert parsed["Date"].datetime == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    assert "RR123456785KZ" in text and "2" in text
    (att,) = list(parsed.iter_attachments())
    assert att.get_content_type() == "application/pdf"
    assert att.get_filename() == "RR123456785KZ.pdf"
    assert att.get_content() == pdf


def test_validate_scan() -> None:
    info = validate_scan(make_pdf(3))
    assert info.pages == 3 and len(info.sha256) == 64
    with pytest.raises(DocumentError, match="encrypted"):
        validate_scan(encrypted_pdf())
    with pytest.raises(DocumentError, match="not a PDF"):
        validate_scan(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DocumentError, match="cannot be read"):
        validate_scan(b"%PDF-1.7\n1 0 obj <<")
    with pytest.raises(DocumentError, match="at most 2"):
        validate_scan(make_pdf(3), max_pages=2)
    with pytest.raises(DocumentError, match="bytes"):
        validate_scan(make_pdf(1), max_bytes=10)


def test_bad_inputs() -> None:
    with pytest.raises(HybridInputError):
        build_scanned_letter_message(make_pdf(), tracking_number="RR123456786KZ",
                                     subscriber_address="a@b.kz", hybrid_address="h@b.kz")
    with pytest.raises(HybridInputError):
        build_scanned_letter_message(make_pdf(), tracking_number="RR123456785KZ",
                                     subscriber_address="a@b.kz\nBcc: x@y", hybrid_address="h@b.kz")
    msg = build_scanned_letter_message(make_pdf(), tracking_number="RR123456785KZ",
                                       subscriber_address="a@b.kz", hybrid_address="h@b.kz",
                                       sender_name="Evil\r\nBcc: x@y")
    assert "\n" not in str(msg["From"]) and msg["Bcc"] is None
