"""Checks applied to every PDF that enters the hybrid path (attachments to print, scans).

A PDF is accepted when it starts with the ``%PDF-`` magic (within the first 1024
bytes, as readers tolerate), is within the size limit, pypdf can parse it and
every page's media box, it is *not* encrypted (even with an empty user password:
the print shop and the archive must be able to open it), and it has between 1
and ``max_pages`` pages.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from esam_mail.services.hybrid.errors import DocumentError

__all__ = ["PdfInfo", "inspect_pdf"]

# What a malformed file can make pypdf raise besides its own errors.
_PARSE_ERRORS = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                 AssertionError, OSError, RecursionError, ZeroDivisionError)


@dataclass(frozen=True, slots=True)
class PdfInfo:
    """A PDF that passed :func:`inspect_pdf`."""

    pages: int
    size: int
    sha256: str
    reader: PdfReader


def inspect_pdf(data: bytes, *, field: str, max_pages: int, max_bytes: int) -> PdfInfo:
    """Validate a PDF and return its page count, size, SHA-256 and an open reader.

    Args:
        data: the file.
        field: how to name the file in errors (``"attachment 'a.pdf'"``, ``"scan"``).
        max_pages: the most pages allowed.
        max_bytes: the largest size allowed.

    Raises:
        DocumentError: with a message that tells the sender what is wrong.
    """
    if not data:
        raise DocumentError(field, "the file is empty")
    if len(data) > max_bytes:
        raise DocumentError(field, f"the file is {len(data)} bytes; at most {max_bytes} allowed")
    if b"%PDF-" not in data[:1024]:
        raise DocumentError(field, "not a PDF file (no %PDF- header); send a PDF document")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise DocumentError(
                field, "the PDF is encrypted or password-protected; send it without protection"
            )
        pages = len(reader.pages)
        for page in reader.pages:
            box = page.mediabox
            if box.width <= 0 or box.height <= 0:
                raise DocumentError(field, "a page has an empty page size")
    except DocumentError:
        raise
    except _PARSE_ERRORS as exc:
        raise DocumentError(
            field, f"the PDF cannot be read ({type(exc).__name__}); re-save or re-export it"
        ) from exc
    if pages < 1:
        raise DocumentError(field, "the PDF has no pages")
    if pages > max_pages:
        raise DocumentError(field, f"the PDF has {pages} pages; at most {max_pages} allowed")
    return PdfInfo(pages, len(data), hashlib.sha256(data).hexdigest(), reader)
