"""The printable paper application: pre-filled from the application data, bilingual
labels, signature lines; the signed scan must be a PDF and is kept privately."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from esam_mail.errors import ValidationError
from esam_mail.services.accounts.application_form import render_application_form, store_signed_scan
from tests.unit.registration.samples import INDIVIDUAL, LEGAL_ENTITY


def _text(pdf: bytes) -> str:
    return "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize("data", [INDIVIDUAL, LEGAL_ENTITY])
def test_form_is_prefilled_with_kazakh_and_russian_labels(data: dict[str, object]) -> None:
    pdf = render_application_form(data, application_id=42, address="x@esam.test", office="ALA01",
                                  employee="e-17", submitted_at=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
                                  agreement_version="2026-1")
    text = _text(pdf)
    assert "x@esam.test" in text and "№ 42" in text and "ALA01" in text and "2026-1" in text
    assert "Өтініш берушінің қолы" in text and "Подпись заявителя" in text
    if data is INDIVIDUAL:
        assert "Ахметова" in text and "850525400017" in text and "Тегі / Фамилия" in text
        assert "B01P3K4, Алматинская область, Қонаев, ул. Абая, 12/3, 45" in text
    else:
        assert "150340001236" in text and "БСН / БИН" in text and "12345-1910-ТОО" in text


def test_signed_scan_must_be_a_pdf_and_is_private(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="scan"):
        store_signed_scan(tmp_path / "apps", 1, b"GIF89a")
    with pytest.raises(ValidationError, match="scan"):
        store_signed_scan(tmp_path / "apps", 1, b"%PDF-1.4" + b"x" * 100, max_bytes=50)
    path = store_signed_scan(tmp_path / "apps", 1, b"%PDF-1.4 signed")
    assert path.read_bytes() == b"%PDF-1.4 signed" and path.stat().st_mode & 0o077 == 0
    assert not list((tmp_path / "apps").glob(".*"))  # no temporary file left
