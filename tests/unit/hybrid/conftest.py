"""Fixtures for the hybrid-mail tests: small PDFs made on the fly."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4, A5, landscape
from reportlab.pdfgen.canvas import Canvas

from esam_mail.services.hybrid.address import PostalAddress, parse_letter

LETTER = """\
Кому: Серікбаев Асқар Нұрланұлы
Улица: ул. Абая
Дом: 12А
Кв.: 5
Населённый пункт: Алматы
Индекс: A01P3K4
---
Құрметті Асқар Нұрланұлы! Сәлем, әр хатқа ғажайып жауап: қуаныш, ңөұүһі.
Уважаемый Аскар Нурланович, сообщаем вам о результатах.
"""


def make_pdf(pages: int = 1, size: tuple[float, float] = A4, rotate: int = 0) -> bytes:
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=size, invariant=1)
    for i in range(pages):
        c.drawString(72, 72, f"attached page {i + 1}")
        c.showPage()
    c.save()
    if not rotate:
        return buf.getvalue()
    w = PdfWriter(clone_from=PdfReader(buf))
    for p in w.pages:
        p.rotate(rotate)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def encrypted_pdf() -> bytes:
    w = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf())))
    w.encrypt(user_password="", owner_password="secret")
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.fixture
def letter_text() -> str:
    return LETTER


@pytest.fixture
def address() -> PostalAddress:
    return parse_letter(LETTER).address


__all__ = ["A5", "LETTER", "encrypted_pdf", "landscape", "make_pdf"]
