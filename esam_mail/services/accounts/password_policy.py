"""The one password policy (rules, para. 11): every place that sets a password calls this.

``esam mailbox add``, ``esam passwd``, ``esam register``, the online application and the web
all call :func:`check_password` (or :func:`password_problem` to get the reason without an
exception), so a password one of them accepts is accepted by all of them.

A password is refused when

* it is shorter than :data:`MIN_LENGTH` (10) characters, or longer than :data:`MAX_BYTES`
  (1024) bytes in UTF-8;
* it contains a control character (C0, DEL or C1: they cannot be typed in every client and
  break line-based protocols);
* it contains the login, a part of the holder's name (3+ letters) or the IIN/BIN, ignoring
  case;
* it is one of the 100,000 most common passwords, ignoring case (the shipped list
  ``esam_mail/data/common-passwords.txt.gz``, see ``docs/passwords.md`` for where it comes from).

The list is read once, on first use (well under 0.1 s), into a ``frozenset``: every check after that
is one hash lookup.  Callers on the event loop call :func:`preload` at start-up (or run the
first check in a thread) so that the read never happens on the loop.

The reason is given in the subscriber's language (kk, ru, en) through the ``identity``
gettext catalogue; :class:`WeakPassword` keeps the message id and parameters so a front-end
can translate it again for its own reader.
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from esam_mail.errors import ValidationError
from esam_mail.i18n import Translator

__all__ = [
    "MAX_BYTES",
    "MIN_LENGTH",
    "PasswordProblem",
    "WeakPassword",
    "check_password",
    "common_passwords",
    "is_common",
    "password_problem",
    "preload",
]

MIN_LENGTH = 10
MAX_BYTES = 1024
COMMON_LIST = Path(__file__).resolve().parents[2] / "data" / "common-passwords.txt.gz"
DOMAIN = "identity"


@dataclass(frozen=True, slots=True)
class PasswordProblem:
    """Why a password is refused: a stable ``code``, an English msgid and its parameters."""

    code: str
    msgid: str
    params: dict[str, object] = field(default_factory=dict)

    def text(self, lang: str | None = "en") -> str:
        return Translator(DOMAIN, lang)(self.msgid, **self.params)


class WeakPassword(ValidationError):
    """A :class:`ValidationError` for the password field that can be re-translated."""

    def __init__(self, field_name: str, problem: PasswordProblem, lang: str | None = "en") -> None:
        super().__init__(field_name, problem.text(lang))
        self.problem = problem
        self.code = problem.code

    def text(self, lang: str | None) -> str:
        return self.problem.text(lang)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased (read once per process)."""
    words = frozenset(gzip.decompress(COMMON_LIST.read_bytes()).decode("utf-8").split("\n"))
    return words - {""}


def preload() -> None:
    """Read the common-password list now (start-up, off the event loop)."""
    common_passwords()


def is_common(password: str) -> bool:
    """True if *password* (ignoring case) is on the shipped list: one set lookup."""
    words = common_passwords()
    return password.lower() in words or _fold(password) in words


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _name_parts(names: Iterable[str | None]) -> list[str]:
    parts: list[str] = []
    for name in names:
        if not name:
            continue
        for word in _fold(name).replace("-", " ").replace("'", " ").replace(".", " ").split():
            if len(word) >= 3:
                parts.append(word)
    return parts


def password_problem(
    password: str,
    *,
    login: str | None = None,
    names: Iterable[str | None] = (),
    ids: Iterable[str | None] = (),
) -> PasswordProblem | None:
    """The first reason *password* is refused, or ``None`` when it is acceptable.

    Args:
        login: the mailbox login (or requested user name).
        names: the holder's names (surname, given name, patronymic, organisation name).
        ids: the holder's IIN or BIN.
    """
    if not isinstance(password, str) or not password:
        return PasswordProblem("empty", "Choose a password.")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return PasswordProblem("too_long", "The password must be at most {max} bytes long.", {"max": MAX_BYTES})
    if any(unicodedata.category(c) == "Cc" for c in password):
        return PasswordProblem("control", "The password must not contain control characters.")
    if len(password) < MIN_LENGTH:
        return PasswordProblem(
            "too_short", "The password must have at least {min} characters.", {"min": MIN_LENGTH}
        )
    folded = _fold(password)
    for number in ids:
        if number and number.strip() and number.strip() in password:
            return PasswordProblem("contains_id", "The password must not contain your IIN or BIN.")
    if login:
        local = _fold(login.partition("@")[0])
        if len(local) >= 3 and local in folded:
            return PasswordProblem("contains_login", "The password must not contain your login.")
    for part in _name_parts(names):
        if part in folded:
            return PasswordProblem("contains_name", "The password must not contain your name.")
    if is_common(password):
        return PasswordProblem(
            "common",
            "This password is one of the 100,000 most common passwords; choose one that is harder to guess.",
        )
    return None


def check_password(
    password: str,
    *,
    login: str | None = None,
    names: Iterable[str | None] = (),
    ids: Iterable[str | None] = (),
    field_name: str = "password",
    lang: str | None = "en",
) -> None:
    """Raise :class:`WeakPassword` (a ``ValidationError`` on *field_name*) when refused."""
    problem = password_problem(password, login=login, names=names, ids=ids)
    if problem is not None:
        raise WeakPassword(field_name, problem, lang)
