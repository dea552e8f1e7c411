"""Render, then read back: window position, extractable Kazakh/Russian, tracking, attachments."""

from __future__ import annotations

import hashlib
import html
import io
import re
import shutil
import subprocess

import pytest
from pypdf import PdfReader
from reportlab.lib.units import mm

from esam_mail.services.hybrid.address import PostalAddress, parse_letter
from esam_mail.services.hybrid.errors import AddressError, DocumentError, LetterTooLong
from esam_mail.services.hybrid.render import (
    WINDOW,
    PdfAttachment,
    RenderOptions,
    render_letter,
)
from esam_mail.services.hybrid.s10 import is_valid_s10

from .conftest import A5, LETTER, encrypted_pdf, landscape, make_pdf

TRACKING = "RR123456785KZ"
SENDER = "Иванов Иван Иванович, ул. Сатпаева 22, Астана, 010000"
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils")


def _render(text: str | None = None, **kw: object):  # type: ignore[no-untyped-def]
    p = parse_letter(LETTER)
    return render_letter(
        p.address, p.text if text is None else text, tracking_number=TRACKING,
        sender_line=SENDER, **kw,  # type: ignore[arg-type]
    )


def _words(pdf: bytes, page: int = 1) -> list[tuple[str, float, float, float, float]]:
    """(word, xMin, yMin, xMax, yMax) in points from the top-left, via pdftotext -bbox."""
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", str(page), "-l", str(page), "-", "-"],
        input=pdf, capture_output=True, check=True,
    ).stdout.decode()
    rx = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')
    return [(html.unescape(m[5]), float(m[1]), float(m[2]), float(m[3]), float(m[4]))
            for m in rx.finditer(out)]


@needs_pdftotext
def test_address_lies_inside_the_window() -> None:
    r = _render()
    words = _words(r.pdf)
    x0, top = WINDOW.left * mm, WINDOW.top * mm
    x1, bottom = x0 + WINDOW.width * mm, top + WINDOW.height * mm
    addr = parse_letter(LETTER).address
    wanted = {w for line in addr.lines() for w in line.split()}
    sender_words = set(SENDER.split())
    inside = [(w, b) for w, a, b, c, d in words if x0 <= a and c <= x1 and top <= b and d <= bottom]
    # Every word of the address is printed inside the window ...
    assert wanted <= {w for w, _ in inside}, wanted - {w for w, _ in inside}
    # ... and nothing but the address and the sender line is in it.
    assert {w for w, _ in inside} <= wanted | sender_words
    # The address sits in the address zone, below the 17.7 mm return zone.
    zone = top + WINDOW.return_zone * mm
    assert all(b >= zone - 1 for w, b in inside if w in wanted and w not in sender_words)
    sender = [(b, d) for w, _, b, _, d in words if w == "Сатпаева"]
    assert sender and top <= sender[0][0] and sender[0][1] <= top + WINDOW.return_zone * mm
    # The tracking number is printed outside the window.
    trk = [(a, b) for w, a, b, _, _ in words if w == "RR"]
    assert trk and all(a > x1 or b > bottom for a, b in trk)


@needs_pdftotext
def test_kazakh_and_russian_text_is_extractable() -> None:
    r = _render()
    text = subprocess.run(["pdftotext", "-", "-"], input=r.pdf, capture_output=True,
                          check=True).stdout.decode()
    for s in ("Құрметті Асқар Нұрланұлы", "Сәлем, әр хатқа", "ғажайып", "қуаныш", "ңөұүһі", "Уважаемый Аскар",
              "Серікбаев", "Иванов Иван Иванович"):
        assert s in text, s
    # pypdf sees the same text, and the fonts are embedded.
    reader = PdfReader(io.BytesIO(r.pdf))
    assert "ә" in reader.pages[0].extract_text()
    fonts = reader.pages[0]["/Resources"]["/Font"]
    for f in fonts.values():
        fo = f.get_object()
        if fo["/Subtype"] == "/TrueType":
            assert "/FontFile2" in fo["/FontDescriptor"].get_object()


@needs_pdftotext
def test_tracking_number_text_and_check_digit() -> None:
    r = _render()
    text = subprocess.run(["pdftotext", "-", "-"], input=r.pdf, capture_output=True,
                          check=True).stdout.decode()
    assert "RR 123 456 785 KZ" in text  # label in the tracking block
    found = re.findall(r"\b[A-Z]{2}\d{9}[A-Z]{2}\b", text)  # page footers
    assert found and all(is_valid_s10(n) and n == TRACKING for n in found)


def test_result_fields_pages_and_sha() -> None:
    r = _render()
    assert r.pdf.startswith(b"%PDF-")
    assert r.sha256 == hashlib.sha256(r.pdf).hexdigest()
    assert r.pages == r.letter_pages == r.sheets == len(PdfReader(io.BytesIO(r.pdf)).pages) == 1
    page = PdfReader(io.BytesIO(r.pdf)).pages[0]
    assert round(float(page.mediabox.width)) == 595 and round(float(page.mediabox.height)) == 842


@needs_pdftotext
def test_long_text_wraps_across_pages_with_page_numbers() -> None:
    long = "Қазақстан Республикасы пошта байланысы туралы заң. " * 400
    r = _render(long, options=RenderOptions(duplex=True))
    assert r.pages >= 3
    assert r.sheets == (r.pages + 1) // 2
    last = subprocess.run(["pdftotext", "-f", str(r.pages), "-l", str(r.pages), "-", "-"],
                          input=r.pdf, capture_output=True, check=True).stdout.decode()
    assert f"{r.pages}/{r.pages}" in last.replace(" ", "")
    for _w, a, _b, c, _d in _words(r.pdf, 2):
        assert a >= 25 * mm - 1 and c <= (210 - 20) * mm + 1  # within the margins


def test_attached_pdf_pages_are_appended_on_a4() -> None:
    att = [
        PdfAttachment("a.pdf", make_pdf(2)),
        PdfAttachment("b.pdf", make_pdf(1, size=landscape(A5))),
        PdfAttachment("c.pdf", make_pdf(1, rotate=90)),
    ]
    r = _render(attachments=att)
    assert (r.letter_pages, r.attachment_pages, r.pages) == (1, 4, 5)
    reader = PdfReader(io.BytesIO(r.pdf))
    assert len(reader.pages) == 5
    for p in reader.pages:
        assert round(float(p.mediabox.width)) == 595 and round(float(p.mediabox.height)) == 842
    assert "attached page 2" in reader.pages[2].extract_text()
    assert "5 / 5" in reader.pages[4].extract_text()


@pytest.mark.parametrize(
    ("data", "needle"),
    [(b"%PDF-1.4\n garbage without objects", "cannot be read"),
     (b"GIF89a not a pdf", "not a PDF"),
     (b"", "empty")],
)
def test_corrupt_attachment_refused(data: bytes, needle: str) -> None:
    with pytest.raises(DocumentError) as e:
        _render(attachments=[PdfAttachment("bad.pdf", data)])
    assert needle in e.value.message and "bad.pdf" in e.value.field


def test_encrypted_attachment_refused() -> None:
    with pytest.raises(DocumentError, match="encrypted"):
        _render(attachments=[PdfAttachment("enc.pdf", encrypted_pdf())])


def test_page_limit() -> None:
    with pytest.raises(LetterTooLong, match="at most 3 pages"):
        _render(attachments=[PdfAttachment("a.pdf", make_pdf(3))],
                options=RenderOptions(max_pages=3))


def test_address_too_long_for_window() -> None:
    a = PostalAddress(name="Очень длинное имя " * 6, street="ул. " * 30, house="1",
                      locality="Алматы", postcode="050000")
    with pytest.raises(AddressError):
        render_letter(a, "x", tracking_number=TRACKING, sender_line="s")
