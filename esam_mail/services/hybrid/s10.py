"""UPU S10 item identifiers (tracking numbers) and a never-reusing allocator.

An S10 identifier is ``SS`` (service indicator, two letters: R registered, E EMS,
C parcel, L express ...) + an 8-digit serial + a check digit + the ISO 3166 alpha-2
code of the issuing country, e.g. ``RR123456785KZ``.  The check digit uses the
weights 8 6 4 2 3 5 9 7; ``11 - sum % 11`` with 10 -> 0 and 11 -> 5 (domain.md §4).

:class:`TrackingAllocator` keeps one counter per (service indicator, country) in
``<state_dir>/s10-<SS><CC>.next`` (the next serial, ASCII decimal), guarded by an
fcntl lock on ``<state_dir>/s10-<SS><CC>.lock``.  Every allocation is made durable
(temp file, fsync, rename, fsync of the directory) *before* the number is handed
out, so a crash can skip numbers but never reuse one.  A missing counter file
means "start at ``first_serial``"; an unreadable one is an error, never a reset.
"""

from __future__ import annotations

import re
from pathlib import Path

from esam_mail.fsio import atomic_write
from esam_mail.services.hybrid._fs import FILE_MODE, locked
from esam_mail.services.hybrid.errors import M_, HybridInputError, HybridStateError

__all__ = [
    "MAX_SERIAL",
    "TrackingAllocator",
    "check_digit",
    "format_s10",
    "format_s10_display",
    "is_valid_s10",
    "validate_s10",
]

WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
MAX_SERIAL = 99_999_999
_S10_RE = re.compile(r"([A-Z]{2})(\d{8})(\d)([A-Z]{2})")
_TWO_LETTERS = re.compile(r"[A-Z]{2}")


def check_digit(serial: str) -> int:
    """Return the S10 check digit of an 8-digit serial (``"47312482"`` -> 9)."""
    if not re.fullmatch(r"\d{8}", serial):
        raise HybridInputError("tracking_number", M_("serial must be 8 digits, got '{serial}'", serial=serial))
    c = 11 - sum(int(d) * w for d, w in zip(serial, WEIGHTS, strict=True)) % 11
    return 0 if c == 10 else 5 if c == 11 else c


def _normalize(number: str) -> str:
    return re.sub(r"\s+", "", number).upper()


def is_valid_s10(number: str) -> bool:
    """True if ``number`` (spaces/case ignored) is well-formed S10 with a correct check digit."""
    m = _S10_RE.fullmatch(_normalize(number))
    return m is not None and check_digit(m[2]) == int(m[3])


def validate_s10(number: str, *, country: str | None = None) -> str:
    """Return the normalized S10 identifier or raise :class:`HybridInputError`.

    Args:
        number: the identifier; spaces are removed and letters upper-cased.
        country: if given, the country code the identifier must end with (e.g. ``"KZ"``).
    """
    norm = _normalize(number)
    m = _S10_RE.fullmatch(norm)
    if not m:
        raise HybridInputError(
            "tracking_number",
            M_("'{number}' is not an S10 identifier: expected 2 letters, 9 digits, 2 letters "
               "(e.g. RR123456785KZ)", number=number),
        )
    if check_digit(m[2]) != int(m[3]):
        raise HybridInputError(
            "tracking_number", M_("{number}: wrong check digit (expected {digit})", number=norm, digit=check_digit(m[2]))
        )
    if country is not None and m[4] != country:
        raise HybridInputError("tracking_number", M_("{number}: not issued in {country}", number=norm, country=country))
    return norm


def format_s10(service: str, serial: int, country: str = "KZ") -> str:
    """Build an identifier from its parts: ``format_s10("RR", 12345678)`` -> ``"RR123456785KZ"``."""
    if not _TWO_LETTERS.fullmatch(service):
        raise HybridInputError("service_indicator", M_("must be two letters A-Z, got '{value}'", value=service))
    if not _TWO_LETTERS.fullmatch(country):
        raise HybridInputError("country", M_("must be an ISO alpha-2 code, got '{value}'", value=country))
    if not 0 <= serial <= MAX_SERIAL:
        raise HybridInputError("serial", M_("must be 0..{max}, got {value}", max=MAX_SERIAL, value=serial))
    s = f"{serial:08d}"
    return f"{service}{s}{check_digit(s)}{country}"


def format_s10_display(number: str) -> str:
    """Human-readable grouping used on labels: ``"RR 123 456 785 KZ"``."""
    n = validate_s10(number)
    return f"{n[:2]} {n[2:5]} {n[5:8]} {n[8:11]} {n[11:]}"


class TrackingAllocator:
    """Hands out S10 numbers that are never reused, safe across threads and processes.

    Args:
        state_dir: directory for the counter and lock files (created if missing).
        service: service indicator, two letters (``"RR"`` registered letter).
        country: issuing country, ``"KZ"``.
        first_serial: the serial to start from when no counter file exists yet
            (lets an operator start a new range above numbers used elsewhere).
        last_serial: the highest serial of this range; beyond it allocation fails.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        service: str = "RR",
        country: str = "KZ",
        first_serial: int = 0,
        last_serial: int = MAX_SERIAL,
    ) -> None:
        format_s10(service, first_serial, country)  # validates all three
        if not first_serial <= last_serial <= MAX_SERIAL:
            raise HybridInputError("last_serial", M_("must be {first}..{max}", first=first_serial, max=MAX_SERIAL))
        self.state_dir = Path(state_dir)
        self.service = service
        self.country = country
        self.first_serial = first_serial
        self.last_serial = last_serial
        stem = f"s10-{service}{country}"
        self._counter = self.state_dir / f"{stem}.next"
        self._lock = self.state_dir / f"{stem}.lock"

    def _read_next(self) -> int:
        try:
            raw = self._counter.read_text("ascii").strip()
        except FileNotFoundError:
            return self.first_serial
        if not raw.isdigit():
            raise HybridStateError(f"S10 counter {self._counter} is corrupt ({raw[:20]!r})")
        return max(int(raw), self.first_serial)

    def peek(self) -> str | None:
        """The number the next :meth:`allocate` would return (None when exhausted)."""
        with locked(self._lock, shared=True):
            nxt = self._read_next()
        return format_s10(self.service, nxt, self.country) if nxt <= self.last_serial else None

    def allocate(self) -> str:
        """Allocate one new tracking number."""
        return self.allocate_many(1)[0]

    def allocate_many(self, count: int) -> list[str]:
        """Allocate ``count`` consecutive new tracking numbers in one durable step."""
        if count < 1:
            raise HybridInputError("count", M_("must be at least 1"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with locked(self._lock):
            first = self._read_next()
            if first + count - 1 > self.last_serial:
                raise HybridStateError(
                    f"S10 range {self.service}..{self.country} exhausted "
                    f"(last serial {self.last_serial}); configure a new service indicator"
                )
            atomic_write(self._counter, f"{first + count}\n".encode("ascii"), mode=FILE_MODE)
        return [format_s10(self.service, s, self.country) for s in range(first, first + count)]
