"""Hybrid mail: e-mail -> printed letter and scanned paper letter -> e-mail (R10).

The core is pure Python (no SMTP/IMAP/DB); only :mod:`.gateway` reaches the directory
and the store (through mailflow's delivery).  Print-ready PDF (ISO 32000), UPU S10 numbers.
Modules:

* :mod:`.s10` UPU S10 tracking numbers and the never-reusing :class:`TrackingAllocator`;
* :mod:`.address` the documented address block at the top of the e-mail body;
* :mod:`.render` the print-ready A4 PDF (address in the DL/C5 window, Code 128);
* :mod:`.batch` print batches per production facility and their job folders;
* :mod:`.events` status events, the append-only log, status e-mails;
* :mod:`.ingest` scanned PDF -> MIME message;
* :mod:`.service` :class:`HybridPost`, the facade the gateway and the CLI call;
* :mod:`.gateway` the mail side: the gateway address, status notices, scan ingest.
"""

from __future__ import annotations

from esam_mail.services.hybrid.address import ParsedLetter, PostalAddress, parse_letter
from esam_mail.services.hybrid.batch import BatchInfo, BatchStore, FacilityMap, PrintItem
from esam_mail.services.hybrid.errors import (
    AddressError,
    AddressProblem,
    DocumentError,
    HybridInputError,
    HybridStateError,
    LetterTooLong,
    TransitionError,
)
from esam_mail.services.hybrid.events import (
    NOTIFY_EVENTS,
    EventLog,
    EventRecord,
    HybridEvent,
    build_status_email,
    can_transition,
    needs_status_email,
)
from esam_mail.services.hybrid.ingest import ScanInfo, build_scanned_letter_message, validate_scan
from esam_mail.services.hybrid.render import (
    PdfAttachment,
    RenderedLetter,
    RenderOptions,
    render_letter,
)
from esam_mail.services.hybrid.s10 import (
    TrackingAllocator,
    check_digit,
    format_s10,
    is_valid_s10,
    validate_s10,
)
from esam_mail.services.hybrid.service import Acceptance, HybridConfig, HybridPost

__all__ = [
    "NOTIFY_EVENTS",
    "Acceptance",
    "AddressError",
    "AddressProblem",
    "BatchInfo",
    "BatchStore",
    "DocumentError",
    "EventLog",
    "EventRecord",
    "FacilityMap",
    "HybridConfig",
    "HybridEvent",
    "HybridInputError",
    "HybridPost",
    "HybridStateError",
    "LetterTooLong",
    "ParsedLetter",
    "PdfAttachment",
    "PostalAddress",
    "PrintItem",
    "RenderOptions",
    "RenderedLetter",
    "ScanInfo",
    "TrackingAllocator",
    "TransitionError",
    "build_scanned_letter_message",
    "build_status_email",
    "can_transition",
    "check_digit",
    "format_s10",
    "is_valid_s10",
    "needs_status_email",
    "parse_letter",
    "render_letter",
    "validate_s10",
    "validate_scan",
]
