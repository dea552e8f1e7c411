"""Errors of the hybrid-mail core.

All of them derive from :class:`esam_mail.errors.ValidationError` (bad input, the
sender can fix it) or :class:`esam_mail.errors.EsamError` (operator side), so the
front-ends map them like every other esam_mail error::

    ValidationError
     +-- HybridInputError          one field, one message
          +-- AddressError         ``problems``: every problem of the address block
          +-- DocumentError        an unreadable / encrypted / too long PDF
          +-- LetterTooLong        rendered letter exceeds the page limit
    EsamError
     +-- HybridStateError          allocator / batch store / event log state problems
          +-- TransitionError      status event not allowed after the current one
"""

from __future__ import annotations

from dataclasses import dataclass

from esam_mail.errors import EsamError, ValidationError
from esam_mail.i18n import domain_message

#: the ``hybrid`` catalogue's Message maker for refusals said to a person (CLI, web)
M_ = domain_message("hybrid")


class HybridInputError(ValidationError):
    """The sender's input for a hybrid letter is wrong (fixable by the sender)."""


@dataclass(frozen=True, slots=True)
class AddressProblem:
    """One problem of the address block: the field (canonical English name) and what to fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class AddressError(HybridInputError):
    """The address block is missing or wrong; ``problems`` lists every problem found."""

    def __init__(self, problems: list[AddressProblem]) -> None:
        super().__init__("address", "; ".join(str(p) for p in problems))
        self.problems = problems


class DocumentError(HybridInputError):
    """A PDF (attachment or scan) is unreadable, encrypted or over a limit."""


class LetterTooLong(HybridInputError):
    """The rendered letter would exceed the configured page limit."""


class HybridStateError(EsamError):
    """Persistent hybrid-mail state is inconsistent or exhausted (operator must look)."""


class TransitionError(HybridStateError):
    """A status event is not allowed after the item's current status."""
