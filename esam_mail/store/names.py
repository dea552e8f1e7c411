"""Folder names: validation and the reversible API name <-> on-disk directory mapping.

API names are Unicode strings with ``/`` as the hierarchy delimiter (``"INBOX"``,
``"Projects/2026"``).  On disk (Maildir++) every folder other than INBOX is one
directory directly under the user's root, named ``.`` + the components joined by ``.``.

Each component is encoded as follows (this is *our* scheme; for names without ``.``
it equals what Dovecot 2.3 writes for Maildir++ with its default modified-UTF-7
storage names):

1. NFC-normalise, then encode with IMAP modified UTF-7 (RFC 3501 5.1.3), so the
   directory name is printable ASCII only;
2. escape ``%`` as ``%25`` and ``.`` as ``%2E`` (``.`` is the on-disk separator).

Examples: ``Projects/2026`` -> ``.Projects.2026``; ``v1.2`` -> ``.v1%2E2``;
``Входящие/Счета`` -> ``.&BBIERQQ+BDQETwRJBDgENQ-.&BCEERwQ1BEIEMA-``;
``INBOX/Sub`` -> ``.INBOX.Sub``.

Validation (``BadFolderName``): non-empty, at most 255 characters, no control
characters (NUL, CR, LF, C0/C1, DEL), no line/paragraph separators or surrogates, no
LIST wildcards ``*``/``%``, no empty component (so no leading, trailing or double
``/``, hence no absolute path), no ``.``/``..`` components, at most ``MAX_DEPTH``
levels and an encoded directory name of at most ``MAX_DISK_NAME`` bytes.  The first
component ``INBOX`` is case-insensitive.  Because the on-disk name is a single path
component that starts with ``.`` and is neither ``.`` nor ``..``, no accepted name can
resolve outside the user's directory.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from esam_mail.errors import BadFolderName

MAX_NAME = 255
MAX_DEPTH = 16
MAX_DISK_NAME = 200  # bytes; leaves room below NAME_MAX (255)
INBOX = "INBOX"

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp", "Co", "Cn"})
_ESCAPE_RE = re.compile(r"%(2E|25)")


def mutf7_encode(text: str) -> str:
    """Encode ``text`` in IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(text: str) -> str:
    """Decode IMAP modified UTF-7; raises ``ValueError`` on malformed or non-canonical input."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise ValueError("non-printable character in modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 shift")
        if end == i + 1:
            out.append("&")
        else:
            b64 = text[i + 1 : end].replace(",", "/")
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
            out.append(raw.decode("utf-16-be"))
        i = end + 1
    decoded = "".join(out)
    if mutf7_encode(decoded) != text:
        raise ValueError("non-canonical modified UTF-7")
    return decoded


def normalize(name: str) -> str:
    """Validate an API folder name and return its canonical form.

    Raises:
        BadFolderName: for any name that is not acceptable (see module docstring).
    """
    if not isinstance(name, str):
        raise BadFolderName("folder name must be a string")
    name = unicodedata.normalize("NFC", name)
    if not name or len(name) > MAX_NAME:
        raise BadFolderName("folder name is empty or too long")
    for ch in name:
        if ch in "*%" or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise BadFolderName("folder name contains a forbidden character")
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        raise BadFolderName("folder hierarchy too deep")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadFolderName("empty, '.' or '..' component in folder name")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    canonical = "/".join(parts)
    if canonical != INBOX:
        disk = _encode(parts)
        if len(disk.encode("ascii")) > MAX_DISK_NAME:
            raise BadFolderName("folder name too long")
    return canonical


def _encode_component(part: str) -> str:
    return mutf7_encode(part).replace("%", "%25").replace(".", "%2E")


def _encode(parts: list[str]) -> str:
    return "." + ".".join(_encode_component(p) for p in parts)


def to_disk(name: str) -> str | None:
    """Directory name (relative to the user's root) for a valid API name; None for INBOX."""
    canonical = normalize(name)
    if canonical == INBOX:
        return None
    return _encode(canonical.split("/"))


def from_disk(dirname: str) -> str | None:
    """API name for an on-disk folder directory name, or None if it is not one of ours."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    parts: list[str] = []
    for enc in dirname[1:].split("."):
        if not enc:
            return None
        unescaped = _ESCAPE_RE.sub(lambda m: "." if m.group(1) == "2E" else "%", enc)
        if "%" in _ESCAPE_RE.sub("", enc):
            return None
        try:
            parts.append(mutf7_decode(unescaped))
        except (ValueError, UnicodeDecodeError):
            return None
    name = "/".join(parts)
    try:
        canonical = normalize(name)
    except BadFolderName:
        return None
    if _encode(canonical.split("/")) != dirname:
        return None
    return canonical


def parent_names(name: str) -> list[str]:
    """Ancestors of a canonical name, outermost first (``a/b/c`` -> ``[a, a/b]``)."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
