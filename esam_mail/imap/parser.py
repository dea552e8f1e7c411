"""IMAP command syntax: tokens, sequence sets, FETCH attributes, dates, mailbox names.

Pure (no Twisted).  The server assembles one complete command (the command line
plus every literal, RFC 3501 §4.3 and RFC 7888 LITERAL-) and hands it to
:func:`tokenize`; handlers then read typed tokens.  Twisted's own ``arg_*``
parsers are not used: they ignore backslash escapes in quoted strings, reject
``{n+}`` and cannot parse ``BODY[HEADER.FIELDS (A B)]<0.10>`` robustly.

Modified UTF-7 mailbox names: RFC 3501 §5.1.3.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .mime import Section


class ParseError(ValueError):
    """Syntax error in a client command (answered with BAD).

    ``public`` is the reply text; keep it a fixed string (never client input).
    """

    def __init__(self, message: str = "syntax error", public: bytes = b"Syntax error.") -> None:
        super().__init__(message)
        self.public = public


class LimitExceeded(ParseError):
    """The command is well-formed but beyond a bound that keeps its cost small
    (answered ``BAD [LIMIT]``, RFC 5530)."""


MAX_NESTING = 64  # parenthesised lists inside one command


class Atom(bytes):
    """An atom (including NIL, flags, sequence sets and FETCH attributes)."""

    __slots__ = ()


class String(bytes):
    """A quoted string or a literal."""

    __slots__ = ()


Token = Atom | String | list  # list = parenthesised list of tokens

# FETCH attributes whose "[" opens a section (fullmatch of the atom before "[")
_SECTION_OWNER = re.compile(rb"(?i)(?:BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)$")
_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,12})(\+?)\}$")  # "~": literal8 (RFC 3516)


def literal_at_end(line: bytes) -> tuple[int, bool] | None:
    """``(size, non_synchronizing)`` when ``line`` ends with a literal marker."""
    m = _LITERAL_AT_END.search(line)
    if not m:
        return None
    return int(m.group(1)), bool(m.group(2))


_ATOM_STOP = re.compile(rb'[ ()"\[]')
_QUOTED_STOP = re.compile(rb'["\\]')


def tokenize(lines: Sequence[bytes], literals: Sequence[bytes]) -> list[Token]:
    """Tokenize a command: ``lines[i]`` ends with a literal marker for ``literals[i]``."""
    out: list[Token] = []
    stack: list[list[Token]] = [out]
    for idx, line in enumerate(lines):
        lit = literals[idx] if idx < len(literals) else None
        body = line
        if lit is not None:
            m = _LITERAL_AT_END.search(line)
            if not m:
                raise ParseError("literal marker missing")
            body = line[: m.start()]
        i, n = 0, len(body)
        while i < n:
            c = body[i : i + 1]
            if c == b" ":
                i += 1
            elif c == b"(":
                if len(stack) > MAX_NESTING:
                    raise LimitExceeded(
                        "nesting", b"Too deeply nested: at most %d levels of parentheses."
                        % MAX_NESTING)
                new: list[Token] = []
                stack[-1].append(new)
                stack.append(new)
                i += 1
            elif c == b")":
                if len(stack) == 1:
                    raise ParseError("unbalanced parenthesis")
                stack.pop()
                i += 1
            elif c == b'"':
                # Scanning runs in the regex engine, not byte by byte in Python: a
                # 64 KiB command line must cost microseconds on the shared loop.
                buf = bytearray()
                i += 1
                while True:
                    m = _QUOTED_STOP.search(body, i)
                    if m is None:
                        raise ParseError("unterminated quoted string")
                    k = m.start()
                    buf += body[i:k]
                    if body[k] == 0x22:
                        i = k + 1
                        break
                    if k + 1 < n:  # backslash escape
                        buf.append(body[k + 1])
                        i = k + 2
                    else:
                        buf.append(0x5C)
                        i = k + 1
                stack[-1].append(String(bytes(buf)))
            else:
                j = i
                while True:
                    m = _ATOM_STOP.search(body, j)
                    stop = m.start() if m is not None else n
                    if stop < n and body[stop] == 0x5B:  # "["
                        if _SECTION_OWNER.match(body, i, stop):
                            # BODY[...] / BINARY[...]: the section may hold spaces and
                            # parentheses.  Anywhere else "[" is an ATOM-CHAR (RFC 3501 §9).
                            close = body.find(b"]", stop)
                            if close < 0:
                                raise ParseError("unterminated [")
                            j = close + 1
                        else:
                            j = stop + 1
                        continue
                    j = stop
                    break
                stack[-1].append(Atom(body[i:j]))
                i = j
        if lit is not None:
            stack[-1].append(lit if isinstance(lit, String) else String(lit))
    if len(stack) != 1:
        raise ParseError("unbalanced parenthesis")
    return out


# ---------------------------------------------------------------------------
# Typed accessors


class Args:
    """A cursor over a command's argument tokens."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = list(tokens)
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.tokens)

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.more() else None

    def next(self) -> Token:
        if not self.more():
            raise ParseError("missing argument")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def atom(self) -> bytes:
        tok = self.next()
        if not isinstance(tok, Atom):
            raise ParseError("atom expected")
        return bytes(tok)

    def astring(self) -> bytes:
        tok = self.next()
        if isinstance(tok, list):
            raise ParseError("string expected")
        return bytes(tok)

    def plist(self) -> list[Token]:
        tok = self.next()
        if not isinstance(tok, list):
            raise ParseError("parenthesised list expected")
        return tok

    def end(self) -> None:
        if self.more():
            raise ParseError("too many arguments")

    def rest(self) -> list[Token]:
        out = self.tokens[self.pos :]
        self.pos = len(self.tokens)
        return out


# ---------------------------------------------------------------------------
# Sequence sets

MAX_NUMBER = 2**32 - 1  # RFC 9051 §9: nz-number / uniqueid are 32-bit unsigned
_SEQSET_RE = re.compile(rb"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*")


def _seq_number(raw: bytes) -> int | None:
    if raw == b"*":
        return None
    if raw[:1] == b"0":  # nz-number: no 0, no leading zeros
        raise ParseError("invalid sequence set", b"Invalid sequence set.")
    if len(raw) > 10 or int(raw) > MAX_NUMBER:  # never int() of a 5,000-digit string
        raise ParseError("number out of range in sequence set",
                         b"Sequence set number out of range (1..4294967295).")
    return int(raw)


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and merge overlapping or adjacent inclusive ranges."""
    ranges.sort()
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SeqSet:
    """RFC 9051 sequence-set, parsed into merged ranges before anything is resolved.

    ``ranges`` are the ranges without ``*``: sorted, disjoint and not adjacent, so a
    command that repeats ``1:5,1:5,...`` 16,000 times costs one range.  Every range
    that mentions ``*`` contains the largest number in use, so their union is one
    interval: ``star`` holds the smallest and largest explicit number found next to
    a ``*`` (``None`` when the set has no ``*``; ``(0, 0)`` for a bare ``*``).
    Numbers are checked to be 1..2^32-1 (``UID FETCH 4294967296`` is a syntax
    error, RFC 9051 §9 ``nz-number``).
    """

    ranges: tuple[tuple[int, int], ...]
    star: tuple[int, int] | None = None

    @classmethod
    def parse(cls, raw: bytes) -> SeqSet:
        """Parse ``1:3,7,9:*`` (the last few results are cached: a long set may
        be parsed in a worker thread first, see ``imap.server``).

        Raises:
            ParseError: bad syntax, 0, or a number above 2^32-1.
        """
        return _parse_seqset(bytes(raw))

    @classmethod
    def _parse(cls, raw: bytes) -> SeqSet:
        ranges: list[tuple[int, int]] = []
        star_lo, star_hi, has_star = MAX_NUMBER + 1, 0, False
        if not _SEQSET_RE.fullmatch(raw):  # one regex pass over the whole set
            raise ParseError("invalid sequence set", b"Invalid sequence set.")
        for item in set(raw.split(b",")):  # repeats cost nothing past this point
            first, colon, second = item.partition(b":")
            lo = _seq_number(first)
            hi = _seq_number(second) if colon else lo
            if lo is None or hi is None:
                has_star = True
                n = hi if lo is None else lo
                if n is not None:
                    star_lo, star_hi = min(star_lo, n), max(star_hi, n)
            else:
                ranges.append((lo, hi) if lo <= hi else (hi, lo))
        star = None
        if has_star:
            star = (star_lo, star_hi) if star_hi else (0, 0)
        return cls(_merge(ranges), star)


    def ranges_for(self, largest: int) -> tuple[tuple[int, int], ...]:
        """Sorted, disjoint ranges with ``*`` standing for ``largest``.

        ``largest`` is 0 for an empty mailbox; ``*`` then addresses nothing.
        """
        if self.star is None:
            return self.ranges
        lo, hi = self.star
        if largest > 0:
            lo, hi = (min(lo, largest), max(hi, largest)) if hi else (largest, largest)
        if not hi:
            return self.ranges
        return _merge([*self.ranges, (lo, hi)])

    def bounds(self, largest: int) -> Iterator[tuple[int, int]]:
        """Alias of :meth:`ranges_for` (iterates the merged ranges)."""
        return iter(self.ranges_for(largest))

    def matcher(self, largest: int) -> Callable[[int], bool]:
        """A membership test for many values (O(log ranges) each)."""
        ranges = self.ranges_for(largest)
        starts = [a for a, _ in ranges]

        def contains(value: int) -> bool:
            i = bisect.bisect_right(starts, value) - 1
            return i >= 0 and value <= ranges[i][1]

        return contains

    def contains(self, value: int, largest: int) -> bool:
        return self.matcher(largest)(value)

    def has_star(self) -> bool:
        return self.star is not None

    def max_explicit(self) -> int:
        top = self.ranges[-1][1] if self.ranges else 0
        return max(top, self.star[1]) if self.star else top

    def select(self, values: Sequence[int], largest: int) -> list[int]:
        """Indexes into ascending ``values`` of the members of the set, ascending.

        Cost is bounded by ``len(values)`` (plus a logarithm), however many ranges the
        client sent: with more ranges than values each value is looked up in the
        ranges, otherwise each range is looked up in the values.
        """
        ranges = self.ranges_for(largest)
        if not values or not ranges:
            return []
        if len(ranges) > len(values):
            hit = self.matcher(largest)
            return [i for i, v in enumerate(values) if hit(v)]
        out: list[int] = []
        for a, b in ranges:
            lo = bisect.bisect_left(values, a)
            hi = bisect.bisect_right(values, b)
            out.extend(range(lo, hi))
        return out


@functools.lru_cache(maxsize=16)
def _parse_seqset(raw: bytes) -> SeqSet:
    return SeqSet._parse(raw)


def format_uid_set(uids: Sequence[int]) -> bytes:
    """Compact ``1:3,7`` form of sorted-or-not UIDs (order kept for COPYUID pairs)."""
    if not uids:
        return b""
    out: list[str] = []
    start = prev = uids[0]
    for u in uids[1:]:
        if u == prev + 1:
            prev = u
            continue
        out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = u
    out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out).encode()


# ---------------------------------------------------------------------------
# FETCH attributes


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One fetch-att.  ``name`` is FLAGS, UID, ..., BODY, BODYSTRUCTURE, MODSEQ or BODY[]."""

    name: str
    section: Section | None = None
    peek: bool = False
    start: int | None = None
    length: int | None = None
    label: bytes = b""  # how the item is echoed in the response


_MACROS = {
    b"ALL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"],
    b"FAST": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
    b"FULL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"],
}
_SIMPLE = {
    b"FLAGS", b"UID", b"INTERNALDATE", b"RFC822.SIZE", b"RFC822", b"RFC822.HEADER",
    b"RFC822.TEXT", b"ENVELOPE", b"BODYSTRUCTURE", b"BODY", b"MODSEQ",
}
_BINARY_RE = re.compile(
    rb"^(BINARY(?:\.PEEK|\.SIZE)?)\[((?:\d+(?:\.\d+)*)?)\](?:<(\d+)\.(\d+)>)?$", re.I)
_BODY_RE = re.compile(rb"^(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?$", re.I)


def parse_section(spec: bytes) -> Section:
    """``1.2.HEADER.FIELDS (A B)`` -> :class:`Section`."""
    spec = spec.strip()
    fields: tuple[bytes, ...] = ()
    m = re.match(rb"^(.*?)\s*\((.*)\)$", spec, re.S)
    if m:
        spec = m.group(1)
        names = tokenize([m.group(2)], [])
        if not names or not all(isinstance(x, Atom | String) for x in names):
            raise ParseError("bad header list")
        fields = tuple(bytes(x).upper() for x in names if not isinstance(x, list))
    path: list[int] = []
    parts = spec.split(b".") if spec else []
    i = 0
    while i < len(parts) and parts[i].isdigit():
        n = int(parts[i])
        if n < 1:
            raise ParseError("bad part number")
        path.append(n)
        i += 1
    text = b".".join(parts[i:]).upper().decode("ascii", "replace")
    if text not in ("", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
        raise ParseError("bad section")
    if text == "MIME" and not path:
        raise ParseError("MIME needs a part number")
    if text.startswith("HEADER.FIELDS") != bool(fields):
        raise ParseError("bad section")
    return Section(tuple(path), text, fields)


def parse_fetch_atts(tok: Token) -> list[FetchItem]:
    """Parse the fetch-att argument (a macro, one attribute or a list)."""
    if isinstance(tok, list):
        raws = tok
    elif isinstance(tok, Atom) and tok.upper() in _MACROS:
        raws = [Atom(x) for x in _MACROS[tok.upper()]]
    else:
        raws = [tok]
    if not raws:
        raise ParseError("empty fetch list")
    items: list[FetchItem] = []
    for raw in raws:
        if not isinstance(raw, Atom):
            raise ParseError("bad fetch attribute")
        up = raw.upper()
        if up in _SIMPLE:
            items.append(FetchItem(up.decode(), label=up))
            continue
        b = _BINARY_RE.match(raw)
        if b:  # RFC 3516: BINARY[part]<partial>, BINARY.PEEK[...], BINARY.SIZE[part]
            kind = b.group(1).upper().decode()
            path = tuple(int(x) for x in b.group(2).split(b".")) if b.group(2) else ()
            if any(x < 1 for x in path):
                raise ParseError("part numbers start at 1")
            bstart = int(b.group(3)) if b.group(3) is not None else None
            blen = int(b.group(4)) if b.group(4) is not None else None
            if (bstart is None) != (blen is None) or (kind == "BINARY.SIZE" and bstart is not None):
                raise ParseError("bad BINARY partial")
            name = "BINARY.SIZE" if kind == "BINARY.SIZE" else "BINARY"
            label = (b"BINARY.SIZE[" if name == "BINARY.SIZE" else b"BINARY[") + b.group(2) + b"]"
            if bstart is not None:
                label += b"<%d>" % bstart
            items.append(FetchItem(name, Section(path), kind == "BINARY.PEEK", bstart, blen,
                                   label))
            continue
        m = _BODY_RE.match(raw)
        if not m:
            raise ParseError("bad fetch attribute")
        sec = parse_section(m.group(2))
        start = int(m.group(3)) if m.group(3) is not None else None
        length = int(m.group(4)) if m.group(4) is not None else None
        if start is not None and length is None:
            raise ParseError("partial needs a length")
        label = b"BODY[" + sec.label() + b"]"
        if start is not None:
            label += b"<%d>" % start
        items.append(
            FetchItem("BODY[]", sec, m.group(1).upper() == b"BODY.PEEK", start, length, label)
        )
    return items


# ---------------------------------------------------------------------------
# Dates

_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
)}
_DATE_RE = re.compile(rb"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$")
_DATETIME_RE = re.compile(
    rb"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def parse_date(raw: bytes) -> dt.date:
    """RFC 3501 ``date`` (``1-Feb-1994``)."""
    m = _DATE_RE.match(raw.strip())
    month = _MONTHS.get(m.group(2).decode().lower()) if m else None
    if not m or month is None:
        raise ParseError("bad date")
    try:
        return dt.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError as exc:
        raise ParseError("bad date") from exc


def parse_datetime(raw: bytes) -> dt.datetime:
    """RFC 3501 ``date-time`` (``"17-Jul-1996 02:44:25 -0700"``)."""
    m = _DATETIME_RE.match(raw)
    month = _MONTHS.get(m.group(2).decode().lower()) if m else None
    if not m or month is None:
        raise ParseError("bad date-time")
    off = dt.timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    if m.group(7) == b"-":
        off = -off
    try:
        return dt.datetime(
            int(m.group(3)), month, int(m.group(1)),
            int(m.group(4)), int(m.group(5)), int(m.group(6)),
            tzinfo=dt.timezone(off),
        )
    except ValueError as exc:
        raise ParseError("bad date-time") from exc


# ---------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 §5.1.3)


class MailboxNameError(ValueError):
    """Not a valid modified UTF-7 mailbox name."""


def decode_mailbox(raw: bytes) -> str:
    """Modified UTF-7 -> str; strict (invalid encodings raise MailboxNameError)."""
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c > 0x7E or c < 0x20:
            raise MailboxNameError("8-bit or control character in mailbox name")
        if c != 0x26:  # '&'
            out.append(chr(c))
            i += 1
            continue
        j = raw.find(b"-", i + 1)
        if j < 0:
            raise MailboxNameError("unterminated &-sequence")
        chunk = raw[i + 1 : j]
        if not chunk:
            out.append("&")
        else:
            if not re.fullmatch(rb"[A-Za-z0-9+,]+", chunk):
                raise MailboxNameError("bad base64 in mailbox name")
            b64 = chunk.replace(b",", b"/")
            b64 += b"=" * (-len(b64) % 4)
            try:
                text = base64.b64decode(b64, validate=True).decode("utf-16-be")
            except (ValueError, UnicodeDecodeError) as exc:
                raise MailboxNameError("bad UTF-16 in mailbox name") from exc
            if not text or any(0x20 <= ord(ch) <= 0x7E for ch in text):
                raise MailboxNameError("non-canonical modified UTF-7")
            out.append(text)
        i = j + 1
    return "".join(out)


def encode_mailbox(name: str) -> bytes:
    """str -> modified UTF-7."""
    out = bytearray()
    buf: list[str] = []

    def flush() -> None:
        if buf:
            b64 = base64.b64encode("".join(buf).encode("utf-16-be")).rstrip(b"=")
            out.extend(b"&" + b64.replace(b"/", b",") + b"-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode())
        else:
            buf.append(ch)
    flush()
    return bytes(out)


def quote(value: bytes) -> bytes:
    """Quoted string, or a literal when the value cannot be quoted."""
    if any(b < 0x20 or b > 0x7E for b in value):
        return b"{%d}\r\n%s" % (len(value), value)
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
