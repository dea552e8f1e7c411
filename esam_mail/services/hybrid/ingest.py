"""Paper -> e-mail: turn a scanned paper letter into a MIME message for a mailbox.

The facility scans the paper item (whose S10 number is on the envelope) into one
PDF.  :func:`validate_scan` checks it (``%PDF-`` magic, pypdf can read it, not
encrypted, page and size limits); :func:`build_scanned_letter_message` builds the
message: From is the operator's hybrid address with the paper sender's name as the
display name, To the subscriber, the Subject carries the tracking number, a short
Russian/Kazakh/English text part, and the PDF attached byte-identical (base64).
Who the target mailbox is (consent, registration) is decided by the caller.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from esam_mail.services.hybrid.errors import M_, HybridInputError
from esam_mail.services.hybrid.pdfcheck import inspect_pdf
from esam_mail.services.hybrid.s10 import validate_s10

__all__ = ["ScanInfo", "build_scanned_letter_message", "validate_scan"]

DEFAULT_MAX_PAGES = 50
DEFAULT_MAX_BYTES = 25 * 1024 * 1024
_ADDR_RE = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")


@dataclass(frozen=True, slots=True)
class ScanInfo:
    """A scan that passed :func:`validate_scan` (goes into the SCANNED event note)."""

    pages: int
    size: int
    sha256: str


def validate_scan(
    pdf: bytes, *, max_pages: int = DEFAULT_MAX_PAGES, max_bytes: int = DEFAULT_MAX_BYTES
) -> ScanInfo:
    """Check a scanned PDF; raise :class:`DocumentError` (field ``scan``) if unusable."""
    info = inspect_pdf(pdf, field="scan", max_pages=max_pages, max_bytes=max_bytes)
    return ScanInfo(info.pages, info.size, info.sha256)


def _one_line(value: str, field: str, max_len: int = 200) -> str:
    value = " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in value).split())
    if len(value) > max_len:
        raise HybridInputError(field, M_("too long (at most {max_len} characters)", max_len=max_len))
    return value


def build_scanned_letter_message(
    pdf: bytes,
    *,
    tracking_number: str,
    subscriber_address: str,
    hybrid_address: str,
    sender_name: str = "",
    received_at: datetime | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EmailMessage:
    """Build the e-mail that carries a scanned paper letter into a subscriber's mailbox.

    Args:
        pdf: the scan (validated here).
        tracking_number: S10 number of the paper item.
        subscriber_address: the target mailbox address (To).
        hybrid_address: the operator's hybrid address (From address, Message-ID domain).
        sender_name: the paper letter's sender as written on the envelope (From display
            name); empty -> "Paper mail".
        received_at: when the paper item was received/scanned (Date); default now.
        max_pages, max_bytes: limits for the scan.

    Raises:
        DocumentError: the scan is not a readable, unencrypted PDF within the limits.
        HybridInputError: a bad tracking number or address.
    """
    tracking = validate_s10(tracking_number)
    for name, addr in (("subscriber_address", subscriber_address),
                       ("hybrid_address", hybrid_address)):
        if not _ADDR_RE.fullmatch(addr):
            raise HybridInputError(name, M_("'{address}' is not an e-mail address", address=addr))
    info = validate_scan(pdf, max_pages=max_pages, max_bytes=max_bytes)
    sender = _one_line(sender_name, "sender_name") or "Бумажное письмо / Қағаз хат / Paper mail"
    when = (received_at or datetime.now(UTC)).astimezone(UTC)

    msg = EmailMessage()
    msg["From"] = formataddr((sender, hybrid_address))
    msg["To"] = subscriber_address
    msg["Subject"] = f"[{tracking}] Бумажное письмо / Қағаз хат / Paper letter"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid("scan", domain=hybrid_address.rpartition("@")[2])
    msg["X-Esam-Tracking"] = tracking
    msg["X-Esam-Scan-SHA256"] = info.sha256
    pages = info.pages
    body = (
        f"Вам поступило бумажное письмо {tracking} от «{sender}». "
        f"Скан ({pages} стр.) приложен в формате PDF.\n\n"
        f"Сізге «{sender}» жіберген {tracking} қағаз хаты келді. "
        f"Скан ({pages} бет) PDF түрінде тіркелген.\n\n"
        f"You have received paper letter {tracking} from \"{sender}\". "
        f"The scan ({pages} page{'s' if pages != 1 else ''}) is attached as a PDF.\n\n"
        f"SHA-256: {info.sha256}\n"
    )
    msg.set_content(body)
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{tracking}.pdf")
    return msg

