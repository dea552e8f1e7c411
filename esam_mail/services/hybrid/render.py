"""Render a hybrid letter to a print-ready A4 PDF (reportlab + pypdf).

Page 1 geometry (DIN 5008 form B, DL/C5 window envelope; all from the top-left)::

    +-------------------------------------------------------------+
    |                                                             |
    |  45 mm                                                      |
    |   +--------- window 85 x 45 mm ---------+   tracking block   |
    |20 | return zone 17.7 mm: sender, 8 pt   |   x >= 125 mm:    |
    |mm | address zone 27.3 mm: recipient     |   number + Code128 |
    |   +-------------------------------------+                    |
    |  letter text from 100 mm, 25 mm left / 20 mm right margins   |
    |  ...                                                         |
    |  footer: tracking number (left), page "n / N" (right)        |
    +-------------------------------------------------------------+

Text is set in DejaVu Sans (TTF, embedded as a subset with a ToUnicode map), so
Russian and Kazakh (ә ғ қ ң ө ұ ү һ і) print and stay extractable.  Attached PDFs
are appended after the letter: each page is normalised (``/Rotate`` folded into
the content), turned to portrait if it is landscape, scaled down to fit A4 if
needed and centred; every appended page gets the same footer stamp so that each
sheet in the print shop can be traced to its item.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pypdf import PdfReader, PdfWriter, Transformation

from esam_mail.errors import ConfigError
from esam_mail.services.hybrid.address import PostalAddress
from esam_mail.services.hybrid.errors import AddressError, AddressProblem, LetterTooLong
from esam_mail.services.hybrid.pdfcheck import inspect_pdf
from esam_mail.services.hybrid.s10 import format_s10_display, validate_s10

# reportlab costs about a second to import: load it on first use, so that every
# `esam` command (which imports the CLI modules) does not pay for it.
mm = 72 / 25.4  # reportlab.lib.units.mm
A4 = (210 * mm, 297 * mm)  # reportlab.lib.pagesizes.A4


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


pdfmetrics: Any = _LazyModule("reportlab.pdfbase.pdfmetrics")

if TYPE_CHECKING:
    from reportlab.graphics.barcode.code128 import Code128
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen.canvas import Canvas
else:

    def Code128(*args: Any, **kw: Any) -> Any:
        from reportlab.graphics.barcode.code128 import Code128 as cls

        return cls(*args, **kw)

    def TTFont(*args: Any, **kw: Any) -> Any:
        from reportlab.pdfbase.ttfonts import TTFont as cls

        return cls(*args, **kw)

    def Canvas(*args: Any, **kw: Any) -> Any:
        from reportlab.pdfgen.canvas import Canvas as cls

        return cls(*args, **kw)

__all__ = [
    "WINDOW",
    "PdfAttachment",
    "RenderOptions",
    "RenderedLetter",
    "WindowBox",
    "render_letter",
]

PAGE_W, PAGE_H = A4
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")


@dataclass(frozen=True, slots=True)
class WindowBox:
    """The envelope window in millimetres from the page's top-left corner."""

    left: float = 20.0
    top: float = 45.0
    width: float = 85.0
    height: float = 45.0
    return_zone: float = 17.7  # sender line zone at the top of the window

    def pdf_rect(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in PDF points, origin bottom-left."""
        x0 = self.left * mm
        y1 = PAGE_H - self.top * mm
        return x0, y1 - self.height * mm, x0 + self.width * mm, y1


WINDOW = WindowBox()


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Print profile and limits (from config)."""

    max_pages: int = 20
    max_attachment_bytes: int = 20 * 1024 * 1024
    duplex: bool = False
    font_path: Path = DEJAVU_DIR / "DejaVuSans.ttf"
    bold_font_path: Path = DEJAVU_DIR / "DejaVuSans-Bold.ttf"
    font_size: float = 11.0
    window: WindowBox = field(default_factory=WindowBox)
    #: inner padding of the address inside the window (mm): keeps text visible when the
    #: sheet shifts in the envelope.
    window_padding: float = 4.0
    #: draw the window outline (for proofs and the sample image; never for production).
    draw_window_outline: bool = False
    #: reproducible output (fixed creation date / document id); for tests and proofs.
    invariant: bool = False


@dataclass(frozen=True, slots=True)
class PdfAttachment:
    """A PDF attached to the e-mail, to be printed after the letter."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class RenderedLetter:
    """The print file of one item."""

    pdf: bytes
    pages: int
    sheets: int
    sha256: str
    letter_pages: int
    attachment_pages: int


def _register_font(path: Path) -> str:
    """Register a TTF once per process; the reportlab name is derived from the path."""
    name = "Esam-" + hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:10]
    if name not in pdfmetrics.getRegisteredFontNames():
        try:
            pdfmetrics.registerFont(TTFont(name, str(path)))
        except Exception as exc:  # reportlab raises TTFError or OSError
            raise ConfigError([f"hybrid.font_path: cannot load {path} ({exc})"]) from exc
    return name


_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CTRL.sub("", text.expandtabs(4))


def wrap_text(text: str, font: str, size: float, width: float) -> list[str]:
    """Greedy word wrap by rendered width; over-long words are split by characters.

    Paragraph breaks and blank lines of ``text`` are kept.
    """
    out: list[str] = []
    for para in _clean(text).split("\n"):
        words = para.split(" ")
        line = ""
        for word in words:
            cand = f"{line} {word}" if line else word
            if pdfmetrics.stringWidth(cand, font, size) <= width:
                line = cand
                continue
            if line:
                out.append(line)
                line = ""
            while pdfmetrics.stringWidth(word, font, size) > width:
                cut = len(word)
                while cut > 1 and pdfmetrics.stringWidth(word[:cut], font, size) > width:
                    cut -= 1
                out.append(word[:cut])
                word = word[cut:]
            line = word
        out.append(line.rstrip())
    return out


@dataclass(frozen=True, slots=True)
class _Layout:
    first_top: float = 100.0  # mm from top where the text starts on page 1
    next_top: float = 20.0
    bottom: float = 22.0
    left: float = 25.0
    right: float = 20.0
    info_left: float = 125.0  # tracking block, right of the window
    info_top: float = 50.0


_LAY = _Layout()


def _fit_address(
    address: PostalAddress, font: str, box_w: float, box_h: float
) -> tuple[float, list[str]]:
    """Largest size in 10..8 pt at which the wrapped address fits the address zone."""
    for size in (10.0, 9.5, 9.0, 8.5, 8.0):
        lines: list[str] = []
        for ln in address.lines():
            lines.extend(wrap_text(ln, font, size, box_w))
        if len(lines) * size * 1.2 <= box_h:
            return size, lines
    raise AddressError([AddressProblem(
        "address", "too long to fit the envelope window; shorten the fields or abbreviate"
    )])


def _fit_sender(sender_line: str, font: str, width: float, max_lines: int) -> list[str]:
    lines = wrap_text(" ".join(sender_line.split()), font, 8.0, width)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and pdfmetrics.stringWidth(last + "…", font, 8.0) > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines


def _footer(c: Canvas, font: str, tracking: str, page_no: int, total: int) -> None:
    c.setFont(font, 7)
    c.drawString(_LAY.left * mm, 10 * mm, tracking)
    c.drawRightString(PAGE_W - _LAY.right * mm, 10 * mm, f"{page_no} / {total}")


def _draw_first_page_head(
    c: Canvas,
    opts: RenderOptions,
    font: str,
    bold: str,
    address: PostalAddress,
    sender_line: str,
    tracking: str,
) -> None:
    win = opts.window
    x0, y0, x1, y1 = win.pdf_rect()
    pad = opts.window_padding * mm
    inner_w = (x1 - x0) - pad - 2 * mm
    if opts.draw_window_outline:
        c.setLineWidth(0.3)
        c.setDash(2, 2)
        c.rect(x0, y0, x1 - x0, y1 - y0)
        c.line(x0, y1 - win.return_zone * mm, x1, y1 - win.return_zone * mm)
        c.setDash()
    # Sender (return address) line: 8 pt, bottom of the return zone, underlined as usual.
    zone_bottom = y1 - win.return_zone * mm
    sender = _fit_sender(sender_line, font, inner_w, 3)
    c.setFont(font, 8)
    for i, ln in enumerate(reversed(sender)):
        c.drawString(x0 + pad, zone_bottom + 2.0 * mm + i * 9.6, ln)
    if sender:
        c.setLineWidth(0.3)
        c.line(x0 + pad, zone_bottom + 1.2 * mm, x0 + pad + inner_w, zone_bottom + 1.2 * mm)
    # Recipient address in the address zone.
    zone_h = win.height * mm - win.return_zone * mm - 2 * mm
    size, lines = _fit_address(address, font, inner_w, zone_h)
    y = zone_bottom - 1 * mm - size
    for i, ln in enumerate(lines):
        c.setFont(bold if i == 0 else font, size)
        c.drawString(x0 + pad, y, ln)
        y -= size * 1.2
    # Tracking block right of the window.
    ix = _LAY.info_left * mm
    iy = PAGE_H - _LAY.info_top * mm
    c.setFont(font, 7)
    c.drawString(ix, iy, "Трек-номер / Трек-нөмір / Tracking No.")
    c.setFont(bold, 11)
    c.drawString(ix, iy - 14, format_s10_display(tracking))
    avail = PAGE_W - _LAY.right * mm - ix
    bar_w = 0.33 * mm
    code = Code128(tracking, barWidth=bar_w, barHeight=12 * mm, humanReadable=False)
    if code.width > avail:
        bar_w *= avail / code.width
        code = Code128(tracking, barWidth=bar_w, barHeight=12 * mm, humanReadable=False)
    code.drawOn(c, ix - code.lquiet, iy - 22 - 12 * mm)


def _count_letter_pages(n_lines: int, leading: float, has_subject: bool) -> tuple[int, int, int]:
    first_cap = int(((297 - _LAY.first_top - _LAY.bottom) * mm) // leading) - (2 if has_subject else 0)
    next_cap = int(((297 - _LAY.next_top - _LAY.bottom) * mm) // leading)
    if n_lines <= first_cap:
        return 1, first_cap, next_cap
    return 1 + math.ceil((n_lines - first_cap) / next_cap), first_cap, next_cap


def _place_on_a4(writer: PdfWriter, reader: PdfReader) -> int:
    """Append every page of ``reader`` to ``writer`` on an A4 page; returns the count."""
    src_pages = list(reader.pages)
    if any(p.rotation % 360 for p in src_pages):
        # pypdf can only rewrite a page's content once the page belongs to a writer.
        normalized = PdfWriter(clone_from=reader)
        for p in normalized.pages:
            if p.rotation % 360:
                p.transfer_rotation_to_content()
        src_pages = list(normalized.pages)
    for src in src_pages:
        box = src.mediabox
        x0, y0, w, h = float(box.left), float(box.bottom), float(box.width), float(box.height)
        t = Transformation().translate(-x0, -y0)
        if w > h:  # landscape: turn to portrait
            t = t.rotate(90).translate(h, 0)
            w, h = h, w
        s = min(1.0, PAGE_W / w, PAGE_H / h)
        t = t.scale(s, s).translate((PAGE_W - w * s) / 2, (PAGE_H - h * s) / 2)
        page = writer.add_blank_page(PAGE_W, PAGE_H)
        page.merge_transformed_page(src, t)
    return len(src_pages)


def render_letter(
    address: PostalAddress,
    text: str,
    *,
    tracking_number: str,
    sender_line: str,
    subject: str = "",
    attachments: Sequence[PdfAttachment] = (),
    options: RenderOptions | None = None,
) -> RenderedLetter:
    """Render one hybrid letter: address in the window, text, tracking barcode, attachments.

    Args:
        address: the validated recipient address.
        text: the letter text (after the address block).
        tracking_number: the item's S10 number (validated).
        sender_line: return address printed in 8 pt above the recipient
            (e.g. ``"Иванов И. И., ул. Абая 1, Алматы, 050000"``).
        subject: optional bold subject line above the text.
        attachments: PDFs printed after the letter, in order.
        options: print profile and limits.

    Raises:
        DocumentError: an attachment is not a readable, unencrypted PDF within limits.
        LetterTooLong: the whole item exceeds ``options.max_pages``.
        AddressError: the address does not fit the window.
        ConfigError: the configured font cannot be loaded (operator problem).
    """
    opts = options or RenderOptions()
    tracking = validate_s10(tracking_number)
    font = _register_font(opts.font_path)
    bold = _register_font(opts.bold_font_path)

    infos = [
        inspect_pdf(a.data, field=f"attachment {a.filename!r}", max_pages=opts.max_pages,
                    max_bytes=opts.max_attachment_bytes)
        for a in attachments
    ]
    att_pages = sum(i.pages for i in infos)

    size = opts.font_size
    leading = size * 1.35
    text_w = PAGE_W - (_LAY.left + _LAY.right) * mm
    lines = wrap_text(text.strip("\n"), font, size, text_w) if text.strip() else []
    letter_pages, first_cap, next_cap = _count_letter_pages(len(lines), leading, bool(subject))
    total = letter_pages + att_pages
    if total > opts.max_pages:
        raise LetterTooLong(
            "letter",
            f"the letter would print on {total} pages ({letter_pages} of text, {att_pages} "
            f"attached); at most {opts.max_pages} pages are allowed",
        )

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4, invariant=int(opts.invariant), pageCompression=1)
    c.setTitle(f"Hybrid letter {tracking}")
    c.setSubject(tracking)
    c.setCreator("esam_mail hybrid")
    c.setAuthor("esam_mail")
    pos = 0
    for page_no in range(1, letter_pages + 1):
        if page_no == 1:
            _draw_first_page_head(c, opts, font, bold, address, sender_line, tracking)
            y = PAGE_H - _LAY.first_top * mm - size
            if subject:
                c.setFont(bold, size)
                c.drawString(_LAY.left * mm, y, wrap_text(subject, bold, size, text_w)[0])
                y -= 2 * leading
            cap = first_cap
        else:
            y = PAGE_H - _LAY.next_top * mm - size
            cap = next_cap
        c.setFont(font, size)
        for ln in lines[pos:pos + cap]:
            c.drawString(_LAY.left * mm, y, ln)
            y -= leading
        pos += cap
        _footer(c, font, tracking, page_no, total)
        c.showPage()
    c.save()

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(buf.getvalue())))
    for info in infos:
        _place_on_a4(writer, info.reader)
    if att_pages:
        stamp = io.BytesIO()
        sc = Canvas(stamp, pagesize=A4, invariant=int(opts.invariant))
        for page_no in range(letter_pages + 1, total + 1):
            _footer(sc, font, tracking, page_no, total)
            sc.showPage()
        sc.save()
        stamps = PdfReader(io.BytesIO(stamp.getvalue()))
        for i, st in enumerate(stamps.pages):
            writer.pages[letter_pages + i].merge_page(st)
    writer.add_metadata({"/Title": f"Hybrid letter {tracking}", "/Subject": tracking})
    out = io.BytesIO()
    writer.write(out)
    pdf = out.getvalue()
    sheets = math.ceil(total / 2) if opts.duplex else total
    return RenderedLetter(
        pdf=pdf, pages=total, sheets=sheets, sha256=hashlib.sha256(pdf).hexdigest(),
        letter_pages=letter_pages, attachment_pages=att_pages,
    )
