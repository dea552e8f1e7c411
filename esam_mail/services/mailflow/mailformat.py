"""Serialising the messages esam itself writes (notices, scanned letters) without losing spaces.

RFC 2047 section 6.2: white space between two adjacent encoded-words is *ignored* when a
header is decoded.  Python's header folder (3.11) splits a long non-ASCII display name into
several encoded-words and may put the space between two words *outside* them, so a reader
shows ``Алматықаласының`` for ``Алматы қаласының``.  :func:`to_bytes` writes the address
headers itself: every encoded-word carries the spaces that follow its text, so nothing is
lost at a fold, and each line stays within 78 characters (RFC 5322 2.1.1).
"""

from __future__ import annotations

import base64
import email.policy
import re
from email.message import EmailMessage
from email.utils import formataddr

__all__ = ["encoded_words", "format_mailbox", "to_bytes"]

_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
_BUDGET = 70  # characters of one encoded-word: "From: " + word + CRLF stays below 78


def _ew(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def encoded_words(text: str, budget: int = _BUDGET) -> list[str]:
    """*text* as RFC 2047 encoded-words of at most *budget* characters each, every space kept
    inside a word (so decoding, which drops the white space between words, restores *text*)."""
    words: list[str] = []
    cur = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        if cur and len(_ew(cur + token)) > budget:
            words.append(_ew(cur))
            cur = ""
        cur += token
        while len(_ew(cur)) > budget:  # one very long word: split it by characters
            cut = len(cur)
            while cut > 1 and len(_ew(cur[:cut])) > budget:
                cut -= 1
            words.append(_ew(cur[:cut]))
            cur = cur[cut:]
    if cur:
        words.append(_ew(cur))
    return words


def format_mailbox(display_name: str, addr_spec: str) -> str:
    """``name <addr>`` for a header value; a non-ASCII name as folded encoded-words."""
    name = " ".join(display_name.split())
    if not name:
        return addr_spec
    if name.isascii():
        return formataddr((name, addr_spec))
    return "\r\n ".join(encoded_words(name)) + f"\r\n <{addr_spec}>"


def to_bytes(msg: EmailMessage) -> bytes:
    """``msg`` as CRLF bytes (``email.policy.SMTP``) with its address headers written by
    :func:`format_mailbox`."""
    data = msg.as_bytes(policy=email.policy.SMTP)
    head, sep, body = data.partition(b"\r\n\r\n")
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    out: list[bytes] = []
    for lines in fields:
        name = lines[0].split(b":", 1)[0].decode("ascii", "replace").strip()
        header = msg.get(name) if name.lower() in _ADDRESS_HEADERS else None
        addresses = getattr(header, "addresses", None)
        if addresses and len(msg.get_all(name) or ()) == 1 and any(not a.display_name.isascii() for a in addresses):
            value = ",\r\n ".join(format_mailbox(a.display_name, a.addr_spec) for a in addresses)
            out.append(f"{name}: {value}".encode("ascii"))
        else:
            out.extend(lines)
    return b"\r\n".join(out) + sep + body
