"""The printable paper application form (appendix of the rules), pre-filled from the directory.

At the post office the employee enters the application, prints this form, the applicant
checks and signs it, and the signed scan is kept with the application
(:func:`store_signed_scan`).  Labels are in Kazakh and Russian (the ``official``
catalogue), the text in DejaVu Sans (Cyrillic and Kazakh letters, embedded as a subset),
rendered with reportlab.  CPU work: call through ``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from esam_mail import fsio
from esam_mail.errors import ValidationError
from esam_mail.i18n import N_, Translator, domain_message

__all__ = ["LABELS", "render_application_form", "store_signed_scan"]

M_ = domain_message("official")

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

#: Field path -> English msgid of its label (translated through the ``official`` catalogue).
LABELS: dict[str, str] = {
    "surname": N_("Surname"),
    "given_name": N_("Given name"),
    "patronymic": N_("Patronymic"),
    "iin": N_("IIN"),
    "birth_date": N_("Birth date"),
    "id_document.type": N_("Identity document"),
    "id_document.number": N_("Document number"),
    "id_document.issuer": N_("Issued by"),
    "id_document.issue_date": N_("Issue date"),
    "residence_address": N_("Residence address"),
    "legal_address": N_("Legal address"),
    "actual_address": N_("Actual address"),
    "home_phone": N_("Home phone"),
    "mobile_phone": N_("Mobile phone"),
    "work_phone": N_("Work phone"),
    "username": N_("Requested user name"),
    "name": N_("Organisation"),
    "bin": N_("BIN"),
    "registration.number": N_("State registration certificate"),
    "registration.date": N_("Registration date"),
    "registration.issuer": N_("Registered by"),
}
_ADDRESS_KEYS = ("postcode", "region", "locality", "street", "house", "apartment")


def _rows(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(label msgid or key, value) in the form's order; addresses on one line."""
    seen: set[str] = set()
    for key in LABELS:
        top = key.split(".", 1)[0]
        if key.endswith("_address") and isinstance(data.get(key), Mapping):
            addr = data[key]
            yield LABELS[key], ", ".join(str(addr[k]) for k in _ADDRESS_KEYS if addr.get(k))
            seen.add(key)
        elif "." in key:
            sub = data.get(top)
            if isinstance(sub, Mapping) and sub.get(key.split(".", 1)[1]) not in (None, ""):
                yield LABELS[key], str(sub[key.split(".", 1)[1]])
            seen.add(top)
        elif data.get(key) not in (None, ""):
            yield LABELS[key], str(data[key])
            seen.add(key)
    for key, value in data.items():  # anything the form does not know still shows
        if key not in seen and not isinstance(value, Mapping | list) and value not in (None, ""):
            yield key, str(value)


def render_application_form(
    data: Mapping[str, Any], *, application_id: int, address: str, office: str | None, employee: str | None,
    submitted_at: dt.datetime, agreement_version: str,
) -> bytes:
    """The filled-in application as a one-page A4 PDF with signature lines."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen.canvas import Canvas

    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(FONT_DIR / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(FONT_DIR / "DejaVuSans-Bold.ttf")))
    kk, ru = Translator("official", "kk"), Translator("official", "ru")

    def both(msgid: str, **kw: Any) -> str:
        return f"{kk(msgid, **kw)} / {ru(msgid, **kw)}"

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4, invariant=True)
    c.setTitle(f"Application {application_id}")
    _w, h = A4
    y = h - 20 * mm
    c.setFont("DejaVuSans-Bold", 13)
    c.drawString(20 * mm, y, kk("Application for an electronic subscriber mailbox"))
    y -= 6 * mm
    c.drawString(20 * mm, y, ru("Application for an electronic subscriber mailbox"))
    y -= 8 * mm
    c.setFont("DejaVuSans", 9)
    c.drawString(20 * mm, y, both("No. {id} of {date}, office {office}, employee {employee}", id=application_id,
                                  date=submitted_at.strftime("%Y-%m-%d"), office=office or "-",
                                  employee=employee or "-"))
    y -= 10 * mm
    for label, value in [*_rows(data), (N_("Mailbox address"), address)]:
        text = both(label) if label in LABELS.values() or label == "Mailbox address" else label
        c.setFont("DejaVuSans", 8)
        c.drawString(20 * mm, y, text[:110])
        c.setFont("DejaVuSans-Bold", 10)
        c.drawString(20 * mm, y - 4.5 * mm, value[:90])
        y -= 11 * mm
        if y < 60 * mm:
            break
    c.setFont("DejaVuSans", 8)
    c.drawString(20 * mm, 50 * mm, kk("I accept the user agreement, edition {version}.", version=agreement_version))
    c.drawString(20 * mm, 45 * mm, ru("I accept the user agreement, edition {version}.", version=agreement_version))
    c.line(20 * mm, 30 * mm, 90 * mm, 30 * mm)
    c.line(110 * mm, 30 * mm, 190 * mm, 30 * mm)
    c.drawString(20 * mm, 25 * mm, both("Applicant's signature"))
    c.drawString(110 * mm, 25 * mm, both("Employee's signature"))
    c.showPage()
    c.save()
    return buf.getvalue()


def store_signed_scan(folder: Path, application_id: int, pdf: bytes, *, max_bytes: int = 20 * 1024 * 1024) -> Path:
    """Keep the signed scan as ``<folder>/<id>.pdf`` (0600, written atomically).

    Raises:
        ValidationError: on ``scan``: not a PDF, empty, too large.
    """
    if not pdf.startswith(b"%PDF-"):
        raise ValidationError("scan", M_("a PDF file"))
    if len(pdf) > max_bytes:
        raise ValidationError("scan", M_("larger than {max_bytes} bytes", max_bytes=max_bytes))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest = folder / f"{application_id}.pdf"
    fsio.atomic_write(dest, pdf, mode=0o600)  # the directory is fsynced too
    return dest
