"""MIME structure of a stored message, rendered as IMAP FETCH data.

Pure (no Twisted, no I/O).  One parse of the raw bytes yields a :class:`MessageMeta`:
ENVELOPE, extended BODYSTRUCTURE and non-extended BODY already rendered as IMAP
bytes, a compact part tree with byte offsets (for ``BODY[1.2]``, ``BODY[1.MIME]``,
``BODY[HEADER]`` ... without re-parsing) and the decoded header texts that SEARCH
needs.  :meth:`MessageMeta.to_json` / :meth:`MessageMeta.from_json` make it fit in
the store's per-folder cache keyed by the Maildir key.

RFCs: 3501 §6.4.5 and §7.4.2 (FETCH items, BODYSTRUCTURE, ENVELOPE), 2045/2046
(MIME headers and multipart delimiters), 2231 (parameter continuations and
charsets), 2047 (encoded words: kept raw in ENVELOPE as RFC 3501 requires,
decoded for SEARCH), 5322 (address lists and groups).

Decisions that clients can see:

* type, subtype, transfer encoding, parameter and disposition names are sent in
  upper case; parameter *values* keep their case (Twisted lowercases them, R4).
* RFC 2231 parameters are decoded and re-emitted as one parameter: ``NAME "v"``
  when the value is ASCII, else ``NAME* "utf-8''%xx.."``.
* body sizes and line counts are over the bytes as stored (the same bytes that
  ``BODY[...]`` returns), so sizes and the data a client receives always agree.
* MIME nesting deeper than :data:`MAX_DEPTH` (or more than :data:`MAX_PARTS`
  parts) is not descended into: the entity becomes an opaque
  ``APPLICATION/OCTET-STREAM`` leaf.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.header
import email.utils
import functools
import quopri
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .sort import sort_json

MAX_DEPTH = 20
MAX_PARTS = 5000
META_VERSION = 5  # 2: colon-less headers, parsed addresses in search; 3, 4: sort keys; 5: address search without comments

# Part-tree node kinds (compact, JSON-friendly)
LEAF, MULTIPART, MESSAGE = 0, 1, 2

_CTE_CANON = {
    "7bit": "7BIT",
    "8bit": "8BIT",
    "binary": "BINARY",
    "base64": "BASE64",
    "quoted-printable": "QUOTED-PRINTABLE",
}

SEARCH_HEADERS = ("from", "to", "cc", "bcc", "subject")
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc"})


# ---------------------------------------------------------------------------
# IMAP string rendering


_NOT_QUOTABLE = re.compile(rb"[^\x20-\x7e]")


def istr(value: str | bytes | None) -> bytes:
    """Render an IMAP nstring: NIL, a quoted string, or a literal when needed."""
    if value is None:
        return b"NIL"
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    # one regex scan, not a Python loop over every byte (a quarter of analyse's time)
    if len(raw) > 1000 or _NOT_QUOTABLE.search(raw) is not None:
        return b"{%d}\r\n%s" % (len(raw), raw.replace(b"\0", b"\x80"))  # no NUL in a literal
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _plist(items: Sequence[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")" if items else b"NIL"


# ---------------------------------------------------------------------------
# Headers


@dataclass(slots=True)
class HeaderField:
    name: str  # lower case
    start: int  # absolute offset of the field's first byte
    end: int  # absolute offset after the field's last line terminator


def _h(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def header_end(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Return (end of header fields, start of body) for the entity at [start, end).

    The blank line between them belongs to neither the fields nor the body; it is
    part of ``BODY[HEADER]``.
    """
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start, start + 2
    if data.startswith(b"\n", start) and start + 1 <= end:
        return start, start + 1
    pos = start
    while True:
        nl = data.find(b"\n", pos, end)
        if nl < 0:
            return end, end
        nxt = nl + 1
        if data.startswith(b"\r\n", nxt) and nxt + 2 <= end:
            return nxt, nxt + 2
        if data.startswith(b"\n", nxt) and nxt + 1 <= end:
            return nxt, nxt + 1
        pos = nxt


def parse_header_fields(data: bytes, start: int, end: int) -> list[HeaderField]:
    """Split the header block [start, end) into fields (folded lines kept together)."""
    fields: list[HeaderField] = []
    current: HeaderField | None = None  # the field a continuation line belongs to
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        first = data[pos : pos + 1]
        if first in (b" ", b"\t"):
            if current is not None:
                current.end = line_end
        else:
            # A line that is not "name:" is no field, and the folded lines after it
            # are its own: never glue them onto the field before (RFC 5322 §2.2).
            current = None
            colon = data.find(b":", pos, line_end)
            if colon > pos:
                name = data[pos:colon].strip().decode("latin-1").lower()
                if name and " " not in name:
                    current = HeaderField(name, pos, line_end)
                    fields.append(current)
        pos = line_end
    return fields


def field_value(data: bytes, f: HeaderField) -> str:
    """Unfolded raw value of a header field (CRLF removed, outer spaces stripped)."""
    raw = data[f.start : f.end]
    raw = raw[raw.index(b":") + 1 :]
    raw = raw.replace(b"\r\n", b"").replace(b"\n", b"")  # unfold: each CRLF or LF goes
    return _h(raw.strip(b" \t\r\n"))


class Headers:
    """Header fields of one entity with first-occurrence lookup."""

    __slots__ = ("_first", "_values", "data", "fields")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data = data
        self.fields = parse_header_fields(data, start, end)
        self._first: dict[str, HeaderField] = {}
        for f in self.fields:
            self._first.setdefault(f.name, f)
        # each value unfolded once: ENVELOPE, SEARCH and the SORT keys ask for the same fields
        self._values: dict[str, str | None] = {}

    def get(self, name: str) -> str | None:
        try:
            return self._values[name]
        except KeyError:
            pass
        f = self._first.get(name)
        value = self._values[name] = None if f is None else field_value(self.data, f)
        return value

    def get_all(self, name: str) -> list[str]:
        return [field_value(self.data, f) for f in self.fields if f.name == name]


# ---------------------------------------------------------------------------
# Structured header values (Content-Type, Content-Disposition)

_TOKEN_RE = re.compile(r'[^\s()<>@,;:\\"/\[\]?=]+')


def _skip_cfws(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                c = s[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _quoted(s: str, i: int) -> tuple[str, int]:
    """Parse a quoted string starting at s[i] == '"'; return (content, next index)."""
    out = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


# Parameters read from one Content-Type / Content-Disposition (RFC 2231 segments count one
# each): BODYSTRUCTURE lists them, so a header of 40,000 "; a=b" stays a bounded structure.
MAX_PARAMS = 1000
_PARAM_NAME = re.compile(r"[^\s;=]+")


def parse_params(s: str, i: int) -> list[tuple[str, str]]:
    """Parse ``*(";" attribute "=" value)`` leniently; names are lower-cased; at most
    MAX_PARAMS of them (the rest of the field is skipped)."""
    raw: list[tuple[str, str]] = []
    n = len(s)
    while i < n and len(raw) < MAX_PARAMS:
        i = _skip_cfws(s, i)
        if i >= n:
            break
        if s[i] == ";":
            i += 1
            continue
        m = _PARAM_NAME.match(s, i)
        if not m:
            i += 1
            continue
        name = m.group(0).lower()
        i = _skip_cfws(s, m.end())
        if i >= n or s[i] != "=":
            # "name" without value: skip to the next ';'
            semi = s.find(";", i)
            i = n if semi < 0 else semi
            continue
        i = _skip_cfws(s, i + 1)
        if i < n and s[i] == '"':
            value, i = _quoted(s, i)
        else:
            semi = s.find(";", i)
            j = n if semi < 0 else semi
            value = s[i:j].strip()
            # drop a trailing comment from an unquoted value
            value = re.sub(r"\s*\(.*\)\s*$", "", value)
            i = j
        raw.append((name, value))
    return _rfc2231(raw)


# (a section number of more digits is no continuation: int() of thousands of digits raises)
_CONT_RE = re.compile(r"^(?P<name>[^*]+)\*(?:(?P<num>\d{1,9})\*?|)$")


def _pct_decode(value: str) -> bytes:
    out = bytearray()
    raw = value.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw):
            try:
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(b)
        i += 1
    return bytes(out)


def _decode_charset(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset or "us-ascii")
    except (LookupError, UnicodeDecodeError):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def _rfc2231(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Merge RFC 2231 continuations and decode extended values (name -> text)."""
    if not any("*" in name for name, _ in raw):
        return raw
    order: list[str] = []
    simple: dict[str, str] = {}
    segments: dict[str, dict[int, tuple[bool, str]]] = {}
    for name, value in raw:
        m = _CONT_RE.match(name)
        if m is None:
            if name not in simple and name not in segments:
                order.append(name)
            simple.setdefault(name, value)
            continue
        base = m.group("name")
        num = int(m.group("num")) if m.group("num") is not None else 0
        extended = name.endswith("*")
        if base not in segments and base not in simple:
            order.append(base)
        segments.setdefault(base, {}).setdefault(num, (extended, value))
    out: list[tuple[str, str]] = []
    for name in order:
        if name in segments:
            segs = segments[name]
            charset = ""
            buf = bytearray()
            for idx, num in enumerate(sorted(segs)):
                if num != idx:
                    break  # RFC 2231 §3: stop at the first gap
                extended, value = segs[num]
                if extended:
                    if idx == 0 and value.count("'") >= 2:
                        charset, _lang, value = value.split("'", 2)
                    buf += _pct_decode(value)
                else:
                    buf += value.encode("utf-8", "surrogateescape")
            out.append((name, _decode_charset(bytes(buf), charset)))
        else:
            out.append((name, simple[name]))
    return out


def parse_content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    """``type/subtype; params`` -> (type, subtype, params) lower-cased type, or None."""
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    m = _TOKEN_RE.match(value, i)
    if not m:
        return None
    ctype = m.group(0).lower()
    i = _skip_cfws(value, m.end())
    if i >= len(value) or value[i] != "/":
        return None
    i = _skip_cfws(value, i + 1)
    m = _TOKEN_RE.match(value, i)
    if not m:
        return None
    sub = m.group(0).lower()
    return ctype, sub, parse_params(value, m.end())


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    m = _TOKEN_RE.match(value, i)
    if not m:
        return None
    return m.group(0).lower(), parse_params(value, m.end())


def _render_param_value(name: str, value: str) -> tuple[bytes, bytes]:
    if all(ord(c) < 0x7F for c in value) and not any(ord(c) < 0x20 for c in value):
        return istr(name.upper()), istr(value)
    # RFC 2231 extended value, normalised to UTF-8
    raw = value.encode("utf-8", "surrogateescape")
    enc = "".join(
        chr(b) if (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or b in b"-._~")
        else f"%{b:02X}"
        for b in raw
    )
    return istr(name.upper() + "*"), istr("utf-8''" + enc)


def render_params(params: Sequence[tuple[str, str]]) -> bytes:
    items: list[bytes] = []
    for name, value in params:
        items.extend(_render_param_value(name, value))
    return _plist(items)


# ---------------------------------------------------------------------------
# Addresses (RFC 5322) for ENVELOPE

_ADDR_SPECIALS = '()<>@,;:\\".[]'


def _addr_tokens(s: str) -> Iterator[tuple[str, str, int]]:
    """Tokens with the offset after each: ('a', atom) ('q', quoted content) ('c', comment)
    ('s', special) ('d', [lit]).  A generator, so a caller that has enough stops early."""
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            v, i = _quoted(s, i)
            yield "q", v, i
        elif c == "(":
            j = _skip_cfws(s, i)
            inner = s[i + 1 : j - 1] if j - 1 > i else ""
            i = max(j, i + 1)
            yield "c", inner.strip(), i
        elif c == "[":
            j = s.find("]", i)
            j = n if j < 0 else j + 1
            yield "d", s[i:j], j
            i = j
        elif c in _ADDR_SPECIALS:
            i += 1
            yield "s", c, i
        else:
            m = _ATOM_RUN.match(s, i)
            j = m.end() if m else i + 1
            yield "a", s[i:j], j
            i = j


_ATOM_RUN = re.compile(r'[^()<>@,;:\\".\[\] \t\r\n]+')


def _phrase(toks: Sequence[tuple[str, str]]) -> str | None:
    words: list[list[str]] = []  # (pieces, joined once: "a" and 50,000 dots stays linear)
    for k, v in toks:
        if k in ("a", "q"):
            words.append([v])
        elif k == "s" and v == "." and words:  # obs-phrase: "John Q. Public"
            words[-1].append(".")
    return " ".join("".join(w) for w in words) if words else None


def _addr_spec(toks: Sequence[tuple[str, str]]) -> tuple[str | None, str | None]:
    toks = [t for t in toks if t[0] != "c"]
    at = max((i for i, t in enumerate(toks) if t == ("s", "@")), default=-1)
    local_t = toks if at < 0 else toks[:at]
    dom_t = [] if at < 0 else toks[at + 1 :]

    def join(ts: Sequence[tuple[str, str]]) -> str:
        out = []
        for k, v in ts:
            if k == "q":
                needs = any(ch in v for ch in _ADDR_SPECIALS + " ") or v == ""
                out.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' if needs else v)
            else:
                out.append(v)
        return "".join(out)

    local = join(local_t) or None
    domain = join(dom_t) or None
    return local, domain


@dataclass(slots=True)
class Address:
    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None

    def render(self) -> bytes:
        return b"(%s %s %s %s)" % (
            istr(self.name), istr(self.route), istr(self.mailbox), istr(self.host)
        )


def _one_address(toks: list[tuple[str, str]]) -> Address | None:
    if not [t for t in toks if t[0] != "c"]:
        return None
    if ("s", "<") in toks:
        lt = toks.index(("s", "<"))
        gt = next((i for i in range(lt, len(toks)) if toks[i] == ("s", ">")), len(toks))
        name = _phrase(toks[:lt])
        inner = [t for t in toks[lt + 1 : gt] if t[0] != "c"]
        route = None
        if ("s", ":") in inner and inner[:1] == [("s", "@")]:
            colon = inner.index(("s", ":"))
            route = "".join(v for _, v in inner[:colon]) or None
            inner = inner[colon + 1 :]
        local, domain = _addr_spec(inner)
        # a comment after an angle-addr is CFWS, not a display name (RFC 5322 §3.4); only the
        # legacy "addr-spec (Full Name)" form below takes its comment as the name (as Dovecot)
    else:
        comments = [v for k, v in toks if k == "c" and v]
        name = comments[-1] if comments else None
        route = None
        local, domain = _addr_spec(toks)
    if local is None and domain is None:
        return None
    return Address(name, route, local or "MISSING_MAILBOX", domain or "MISSING_DOMAIN")


# At most this many addresses of one field are parsed (ENVELOPE, SEARCH's parsed forms, the
# SORT keys): a 300 KB To: of 43,000 addresses cost seconds of CPU per message, and ENVELOPE
# grew with it.  Dovecot's parser takes the same kind of limit (message_address_parse's
# max_addresses: "the rest are skipped"); a group's start and end count as addresses here.
# SEARCH still finds the addresses after the cap: search_text adds the unparsed rest as text.
MAX_ADDRESSES = 1000


def parse_addresses(value: str | None, limit: int = MAX_ADDRESSES) -> list[Address] | None:
    """Parse an address-list into ENVELOPE addresses, groups as start/end markers; at most
    ``limit`` entries (the rest of the field is skipped, see MAX_ADDRESSES)."""
    return _parse_addresses(value, limit)[0]


def _parse_addresses(value: str | None, limit: int) -> tuple[list[Address] | None, int]:
    """:func:`parse_addresses` and the offset in ``value`` where parsing stopped (its length
    when it read everything).  Linear in the text read: every token is looked at a bounded
    number of times, and reading stops once ``limit`` entries are out."""
    if value is None:
        return None, 0
    out: list[Address] = []
    cur: list[tuple[str, str]] = []
    cur_has_at = False
    in_group = False
    angle = 0
    stop, prev = len(value), 0
    for kind, text, pos in _addr_tokens(value):
        if len(out) >= limit:  # (only right after a ",", ":" or ";": nothing half-read)
            stop = prev
            break
        prev = pos
        tok = (kind, text)
        if tok == ("s", "<"):
            angle += 1
        elif tok == ("s", ">"):
            angle = max(0, angle - 1)
        if angle:
            cur.append(tok)
            cur_has_at = cur_has_at or tok == ("s", "@")
            continue
        if tok == ("s", ","):
            a = _one_address(cur)
            if a:
                out.append(a)
            cur, cur_has_at = [], False
        elif tok == ("s", ":") and not in_group and not cur_has_at:
            out.append(Address(None, None, _phrase(cur) or "", None))
            in_group = True
            cur, cur_has_at = [], False
        elif tok == ("s", ";") and in_group:
            a = _one_address(cur)
            if a:
                out.append(a)
            out.append(Address(None, None, None, None))
            in_group = False
            cur, cur_has_at = [], False
        else:
            cur.append(tok)
            cur_has_at = cur_has_at or tok == ("s", "@")
    else:
        a = _one_address(cur)
        if a:
            out.append(a)
    if in_group:
        out.append(Address(None, None, None, None))
    return (out or None), stop  # (a group cut short still gets its end marker)


def _render_addresses(addrs: list[Address] | None) -> bytes:
    if not addrs:
        return b"NIL"
    return b"(" + b"".join(a.render() for a in addrs) + b")"


AddressParser = Callable[[str | None], "tuple[list[Address] | None, int]"]


def _plain_parser(value: str | None) -> tuple[list[Address] | None, int]:
    return _parse_addresses(value, MAX_ADDRESSES)


def _memo_parser() -> AddressParser:
    """A parser that parses each distinct field value once (``analyse`` needs the same
    From/To/Cc for ENVELOPE, SEARCH and the SORT keys)."""
    memo: dict[str, tuple[list[Address] | None, int]] = {}

    def parse(value: str | None) -> tuple[list[Address] | None, int]:
        if value is None:
            return None, 0
        hit = memo.get(value)
        if hit is None:
            hit = memo[value] = _parse_addresses(value, MAX_ADDRESSES)
        return hit

    return parse


def render_envelope(h: Headers, parse: AddressParser = _plain_parser) -> bytes:
    """ENVELOPE (RFC 3501 §7.4.2); strings are the raw (still RFC 2047 encoded) text.
    Each address field lists at most MAX_ADDRESSES entries."""

    def parse_addresses(value: str | None) -> list[Address] | None:
        return parse(value)[0]

    frm = parse_addresses(h.get("from"))
    sender = parse_addresses(h.get("sender")) or frm
    reply_to = parse_addresses(h.get("reply-to")) or frm
    parts = [
        istr(h.get("date")),
        istr(h.get("subject")),
        _render_addresses(frm),
        _render_addresses(sender),
        _render_addresses(reply_to),
        _render_addresses(parse_addresses(h.get("to"))),
        _render_addresses(parse_addresses(h.get("cc"))),
        _render_addresses(parse_addresses(h.get("bcc"))),
        istr(h.get("in-reply-to")),
        istr(h.get("message-id")),
    ]
    return b"(" + b" ".join(parts) + b")"


# ---------------------------------------------------------------------------
# Entity tree


@dataclass(slots=True)
class Entity:
    """One MIME entity: header block [hstart, hend), body [bstart, end)."""

    hstart: int
    hend: int
    bstart: int
    end: int
    headers: Headers
    ctype: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    children: list[Entity] = field(default_factory=list)
    message: Entity | None = None  # embedded message of a message/rfc822 part
    explicit_type: bool = False

    @property
    def kind(self) -> int:
        if self.children:
            return MULTIPART
        if self.message is not None:
            return MESSAGE
        return LEAF

    def param(self, name: str) -> str | None:
        for n, v in self.params:
            if n == name:
                return v
        return None

    def node(self) -> tuple[Any, ...]:
        """Compact form used for section fetching: (hstart, bstart, end, kind, kids).

        Nested tuples of ints, not lists: the garbage collector stops tracking them,
        so thousands of cached summaries do not lengthen full collections (which
        stall every thread, the event loop included).  JSON stores them as lists.
        """
        kids: tuple[Any, ...] = ()
        if self.children:
            kids = tuple(c.node() for c in self.children)
        elif self.message is not None:
            kids = (self.message.node(),)
        return (self.hstart, self.bstart, self.end, self.kind, kids)


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse_entity(
    data: bytes,
    start: int,
    end: int,
    *,
    depth: int = 0,
    default: tuple[str, str] = ("text", "plain"),
    budget: _Budget | None = None,
) -> Entity:
    """Parse the entity at data[start:end] (headers, body and sub-entities)."""
    budget = budget or _Budget()
    budget.parts += 1
    hend, bstart = header_end(data, start, end)
    headers = Headers(data, start, hend)
    ent = Entity(start, hend, bstart, end, headers)
    ct = parse_content_type(headers.get("content-type"))
    if ct is None:
        ent.ctype, ent.subtype = default
        if default == ("text", "plain"):
            ent.params = [("charset", "us-ascii")]
    else:
        ent.ctype, ent.subtype, ent.params = ct
        ent.explicit_type = True
    too_deep = depth >= MAX_DEPTH or budget.parts >= MAX_PARTS
    if ent.ctype == "multipart":
        boundary = ent.param("boundary")
        if too_deep or not boundary:
            if too_deep:
                ent.ctype, ent.subtype, ent.params = "application", "octet-stream", []
            else:
                # RFC 2046 §5.1.1: no boundary -> treat as text/plain
                ent.ctype, ent.subtype = "text", "plain"
                ent.params = [("charset", "us-ascii")]
            return ent
        child_default = ("message", "rfc822") if ent.subtype == "digest" else ("text", "plain")
        spans = split_multipart(data, bstart, end, boundary)
        if not spans:
            spans = [(end, end)]
        for s, e in spans:
            ent.children.append(
                parse_entity(data, s, e, depth=depth + 1, default=child_default, budget=budget)
            )
    elif ent.ctype == "message" and ent.subtype in ("rfc822", "global"):
        cte = (headers.get("content-transfer-encoding") or "7bit").strip().lower()
        if too_deep:
            ent.ctype, ent.subtype, ent.params = "application", "octet-stream", []
        elif cte in ("7bit", "8bit", "binary"):
            ent.message = parse_entity(data, bstart, end, depth=depth + 1, budget=budget)
    return ent


def split_multipart(data: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """Spans of the body parts between RFC 2046 §5.1.1 delimiter lines.

    The CRLF before a delimiter belongs to the delimiter, not to the part.
    """
    delim = b"--" + boundary.encode("utf-8", "surrogateescape")
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while True:
        i = data.find(delim, pos, end)
        if i < 0:
            break
        pos = i + len(delim)
        if i != start and data[i - 1 : i] != b"\n":
            continue
        after = i + len(delim)
        closing = data.startswith(b"--", after) and after + 2 <= end
        j = after + 2 if closing else after
        if not closing:
            while j < end and data[j : j + 1] in (b" ", b"\t"):
                j += 1
            if j < end and data[j : j + 1] not in (b"\r", b"\n"):
                continue  # a longer boundary that merely starts with ours
        if part_start is not None:
            pend = i
            if pend > part_start and data[pend - 1 : pend] == b"\n":
                pend -= 1
                if pend > part_start and data[pend - 1 : pend] == b"\r":
                    pend -= 1
            spans.append((part_start, max(part_start, pend)))
        if closing:
            return spans
        nl = data.find(b"\n", j, end)
        part_start = end if nl < 0 else nl + 1
        pos = part_start
    if part_start is not None:
        spans.append((part_start, end))
    return spans


def count_lines(data: bytes, start: int, end: int) -> int:
    """Lines of a body: line terminators, plus one for an unterminated last line."""
    if end <= start:
        return 0
    n = data.count(b"\n", start, end)
    if data[end - 1 : end] != b"\n":
        n += 1
    return n


# ---------------------------------------------------------------------------
# BODYSTRUCTURE / BODY rendering


def _bodystructure(ent: Entity, data: bytes, extended: bool) -> bytes:
    h = ent.headers
    if ent.children:
        kids = b"".join(_bodystructure(c, data, extended) for c in ent.children)
        out = kids + b" " + istr(ent.subtype.upper())
        if extended:
            out += b" " + render_params(ent.params) + b" " + _ext_tail(h)
        return b"(" + out + b")"
    cte = (h.get("content-transfer-encoding") or "7bit").strip()
    cte_out = _CTE_CANON.get(cte.lower(), cte.upper())
    size = ent.end - ent.bstart
    fields = [
        istr(ent.ctype.upper()),
        istr(ent.subtype.upper()),
        render_params(ent.params),
        istr(h.get("content-id")),
        istr(h.get("content-description")),
        istr(cte_out),
        b"%d" % size,
    ]
    if ent.message is not None:
        fields.append(render_envelope(ent.message.headers))
        fields.append(_bodystructure(ent.message, data, extended))
        fields.append(b"%d" % count_lines(data, ent.bstart, ent.end))
    elif ent.ctype == "text":
        fields.append(b"%d" % count_lines(data, ent.bstart, ent.end))
    if extended:
        fields.append(istr(h.get("content-md5")))
        fields.append(_ext_tail(h))
    return b"(" + b" ".join(fields) + b")"


def _ext_tail(h: Headers) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc."""
    dsp = parse_disposition(h.get("content-disposition"))
    dsp_b = (
        b"NIL"
        if dsp is None
        else b"(" + istr(dsp[0].upper()) + b" " + render_params(dsp[1]) + b")"
    )
    lang = h.get("content-language")
    if lang is None:
        lang_b = b"NIL"
    else:
        langs = [x.strip() for x in re.sub(r"\([^)]*\)", "", lang).split(",") if x.strip()]
        if not langs:
            lang_b = b"NIL"
        elif len(langs) == 1:
            lang_b = istr(langs[0])
        else:
            lang_b = b"(" + b" ".join(istr(x) for x in langs) + b")"
    return dsp_b + b" " + lang_b + b" " + istr(h.get("content-location"))


# ---------------------------------------------------------------------------
# Decoding for SEARCH


def decode_header_text(value: str | None) -> str:
    """RFC 2047-decode an unfolded header value to text (lenient)."""
    if not value:
        return ""
    if len(value) <= _DECODE_MEMO_MAX:
        return _decode_header_memo(value)
    return _decode_header(value)


# analyse decodes Subject and the From/To names twice (SEARCH text, SORT keys), and one
# sender's display name recurs across a folder: short values are remembered (bounded)
_DECODE_MEMO_MAX = 512


def _decode_header(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


_decode_header_memo = functools.lru_cache(maxsize=1024)(_decode_header)


def search_text(name: str, raw_values: Sequence[str], parse: AddressParser = _plain_parser) -> str:
    """What SEARCH matches for a header: its decoded text and, for the address
    fields, each address as parsed (``Name <local@domain>``: comments and folding
    whitespace gone), so ``FROM a@b.org`` finds ``<a (x)@ (y) b.org>`` like Dovecot.
    Past MAX_ADDRESSES the rest of the field is searched as written."""
    if name not in ADDRESS_HEADERS:
        return decode_header_text(" ".join(raw_values))
    # RFC 3501 §6.4.4: the envelope's address structure, not the header text: comments are
    # gone, group names stay (as Dovecot); an unparsable value is searched as written
    forms = []
    for value in raw_values:
        addrs, stop = parse(value)
        if not addrs:
            forms.append(decode_header_text(value))
            continue
        for a in addrs:
            if a.host is None:
                if a.mailbox:
                    forms.append(decode_header_text(a.mailbox) + ":")  # group start
                continue
            addr = f"<{a.mailbox}@{a.host}>"
            forms.append(f"{decode_header_text(a.name)} {addr}" if a.name else addr)
        if stop < len(value):
            forms.append(decode_header_text(value[stop:]))
    return ", ".join(forms)


def decode_body(data: bytes, ent: Entity) -> str:
    """Transfer- and charset-decoded text of a text/* leaf."""
    raw = data[ent.bstart : ent.end]
    cte = (ent.headers.get("content-transfer-encoding") or "").strip().lower()
    if cte == "base64":
        try:
            raw = binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", raw) + b"==")
        except binascii.Error:
            pass
    elif cte == "quoted-printable":
        raw = quopri.decodestring(raw)
    return _decode_charset(raw, ent.param("charset") or "utf-8")


def searchable_text(data: bytes, ent: Entity, *, headers: bool) -> str:
    """Decoded text of every text part (and, with ``headers``, every header)."""
    out: list[str] = []
    if headers:
        for f in ent.headers.fields:
            out.append(f.name + ": " + decode_header_text(field_value(data, f)))
    if ent.children:
        for c in ent.children:
            out.append(searchable_text(data, c, headers=headers))
    elif ent.message is not None:
        out.append(searchable_text(data, ent.message, headers=True))
    elif ent.ctype == "text":
        out.append(decode_body(data, ent))
    return "\n".join(out)


def sent_date(value: str | None) -> str | None:
    """Date header -> ISO date (its own timezone, as RFC 3501 SENT* keys want)."""
    if not value:
        return None
    try:
        d = email.utils.parsedate_to_datetime(decode_header_text(value))
    except (TypeError, ValueError, IndexError):
        return None
    if d is None:
        return None
    return d.date().isoformat()


# ---------------------------------------------------------------------------
# The cacheable summary


@dataclass(slots=True)
class MessageMeta:
    """Everything FETCH/SEARCH need without re-parsing; JSON-serialisable."""

    envelope: bytes
    bodystructure: bytes
    body: bytes
    tree: tuple[Any, ...]
    search: dict[str, str]  # decoded from/to/cc/bcc/subject (present ones only)
    sent: str | None  # ISO date of the Date header
    size: int
    sort: dict[str, Any] = field(default_factory=dict)  # RFC 5256 keys (imap.sort.sort_json)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": META_VERSION,
            "env": self.envelope.decode("latin-1"),
            "bs": self.bodystructure.decode("latin-1"),
            "b": self.body.decode("latin-1"),
            "t": _tree_json(self.tree),
            "s": self.search,
            "d": self.sent,
            "n": self.size,
            "k": self.sort,
        }

    @classmethod
    def from_json(cls, obj: Any) -> MessageMeta | None:
        """Inverse of :meth:`to_json`; None for foreign or outdated entries."""
        if not isinstance(obj, dict) or obj.get("v") != META_VERSION:
            return None
        try:
            return cls(
                envelope=obj["env"].encode("latin-1"),
                bodystructure=obj["bs"].encode("latin-1"),
                body=obj["b"].encode("latin-1"),
                tree=_frozen_tree(obj["t"]),
                search=dict(obj["s"]),
                sent=obj["d"],
                size=int(obj["n"]),
                sort=dict(obj["k"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError, UnicodeError):
            return None


def parse_message(data: bytes) -> Entity:
    return parse_entity(data, 0, len(data))


def _tree_json(node: Sequence[Any]) -> list[Any]:
    return [*node[:4], [_tree_json(k) for k in node[4]]]


def _frozen_tree(node: Any) -> tuple[Any, ...]:
    """A part tree read back from JSON (lists) as nested tuples (see ``Entity.node``)."""
    if not isinstance(node, list | tuple) or len(node) != 5:
        raise TypeError("bad part tree")
    return (*node[:4], tuple(_frozen_tree(k) for k in node[4]))


@dataclass(slots=True, frozen=True)
class EnvelopeOnly:
    """A message's ENVELOPE without the rest of :class:`MessageMeta` (a FETCH that asks
    for ENVELOPE and no other parsed item: the header alone, a third of analyse's CPU)."""

    envelope: bytes

    def to_json(self) -> dict[str, Any]:
        return {"v": ENVELOPE_VERSION, "env": self.envelope.decode("latin-1")}

    @classmethod
    def from_json(cls, obj: Any) -> EnvelopeOnly | None:
        """An envelope-only entry, or the envelope of a full :class:`MessageMeta` entry."""
        if not isinstance(obj, dict) or obj.get("v") not in (ENVELOPE_VERSION, META_VERSION):
            return None
        env = obj.get("env")
        return cls(env.encode("latin-1")) if isinstance(env, str) else None


# distinct from every META_VERSION: a full summary never loads an envelope-only entry
ENVELOPE_VERSION = f"env{META_VERSION}"


def envelope_of(data: bytes) -> EnvelopeOnly:
    """The ENVELOPE of a whole message from its header block only."""
    hend, _ = header_end(data, 0, len(data))
    return EnvelopeOnly(render_envelope(Headers(data, 0, hend)))


def analyse(data: bytes) -> MessageMeta:
    """Parse a whole message once and produce its :class:`MessageMeta`."""
    ent = parse_message(data)
    h = ent.headers
    parse = _memo_parser()
    return MessageMeta(
        envelope=render_envelope(h, parse),
        bodystructure=_bodystructure(ent, data, True),
        body=_bodystructure(ent, data, False),
        tree=ent.node(),
        search={
            k: search_text(k, h.get_all(k), parse) for k in SEARCH_HEADERS if h.get(k) is not None
        },
        sent=sent_date(h.get("date")),
        size=len(data),
        sort=sort_json(h, lambda v: parse(v)[0], decode_header_text),
    )


def bodystructure(data: bytes, *, extended: bool = True) -> bytes:
    return _bodystructure(parse_message(data), data, extended)


def envelope(data: bytes) -> bytes:
    ent = parse_message(data)
    return render_envelope(ent.headers)


# ---------------------------------------------------------------------------
# Sections (RFC 3501 §6.4.5 BODY[<section>]<<partial>>)


class SectionError(ValueError):
    """The section does not exist in this message (or is malformed)."""


@dataclass(frozen=True, slots=True)
class Section:
    """A parsed ``section`` spec: part path plus an optional text specifier."""

    path: tuple[int, ...] = ()
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[bytes, ...] = ()

    def label(self) -> bytes:
        """The section as echoed in the FETCH response."""
        out = ".".join(str(p) for p in self.path).encode()
        if self.text:
            out += (b"." if out else b"") + self.text.encode()
        if self.text.startswith("HEADER.FIELDS"):
            out += b" (" + b" ".join(self.fields) + b")"
        return out


def _node_at(tree: Sequence[Any], path: Sequence[int]) -> tuple[Sequence[Any], bool]:
    """Resolve a part path; returns (node, node-was-reached-as-a-part).

    RFC 3501 §6.4.5: a message/rfc822 part's sub-parts are the parts of the message
    it holds, and a non-multipart message has exactly one part, ``1`` (its body).
    So at each step a message part is first replaced by the message inside it.
    """
    node = tree
    for depth, n in enumerate(path):
        if n < 1:
            raise SectionError("part numbers start at 1")
        kind, kids = node[3], node[4]
        if depth > 0:  # ``node`` is a body part: only these two kinds have sub-parts
            if kind == MESSAGE:
                node = kids[0]  # step into the embedded message
                kind, kids = node[3], node[4]
            elif kind != MULTIPART:
                raise SectionError("no such part")
        if kind == MULTIPART:
            if n > len(kids):
                raise SectionError("no such part")
            node = kids[n - 1]
        elif n != 1:
            raise SectionError("no such part")
        # else: part 1 of a non-multipart message is that message's body
    return node, bool(path)


def _filter_fields(
    data: bytes, start: int, end: int, names: Iterable[bytes], negate: bool
) -> bytes:
    wanted = {n.decode("latin-1").lower() for n in names}
    out = [
        data[f.start : f.end]
        for f in parse_header_fields(data, start, end)
        if (f.name in wanted) != negate
    ]
    body = b"".join(x if x.endswith(b"\n") else x + b"\r\n" for x in out)
    return body + b"\r\n"


def section_bytes(data: bytes, tree: Sequence[Any], sec: Section) -> bytes:
    """The bytes of ``BODY[sec]`` (before any partial range is applied).

    Raises:
        SectionError: the part does not exist or the specifier does not apply.
    """
    node, as_part = _node_at(tree, sec.path)
    hstart, bstart, end, kind, kids = node
    if sec.text == "":
        if not sec.path:
            return data[hstart:end]
        return data[bstart:end]
    if sec.text == "MIME":
        if not sec.path:
            raise SectionError("MIME needs a part number")
        return data[hstart:bstart]
    # HEADER*, TEXT apply to a message: the root or a message/rfc822 part
    if as_part:
        if kind != MESSAGE:
            raise SectionError("not a message/rfc822 part")
        hstart, bstart, end, kind, kids = kids[0]
    if sec.text == "TEXT":
        return data[bstart:end]
    if sec.text == "HEADER":
        return data[hstart:bstart]
    hend, _ = header_end(data, hstart, end)
    return _filter_fields(data, hstart, hend, sec.fields, sec.text == "HEADER.FIELDS.NOT")


class UnknownCTE(ValueError):
    """RFC 3516: the part's Content-Transfer-Encoding cannot be decoded."""


def binary_section(data: bytes, tree: Sequence[Any], path: Sequence[int]) -> bytes:
    """``BINARY[path]``: the part's body with its transfer encoding removed (RFC 3516).

    The whole message for an empty path; composite parts as they are.

    Raises:
        SectionError: no such part.  UnknownCTE: an encoding we cannot decode.
    """
    if not path:
        return data
    node, _ = _node_at(tree, path)
    hstart, bstart, end, kind, _kids = node
    raw = data[bstart:end]
    if kind != LEAF:
        return raw
    hend, _ = header_end(data, hstart, end)
    cte = (Headers(data, hstart, hend).get("content-transfer-encoding") or "7bit").strip().lower()
    if cte in ("7bit", "8bit", "binary"):
        return raw
    if cte == "base64":
        try:
            return binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", raw) + b"==")
        except binascii.Error as exc:
            raise UnknownCTE("bad base64") from exc
    if cte == "quoted-printable":
        return quopri.decodestring(raw)
    raise UnknownCTE(cte)


def partial(data: bytes, start: int | None, length: int | None) -> bytes:
    """Apply ``<start.length>``: exactly ``length`` octets (fewer only at the end)."""
    if start is None:
        return data
    if start >= len(data):
        return b""
    return data[start : start + length] if length is not None else data[start:]


def format_internal_date(d: dt.datetime) -> bytes:
    """RFC 3501 date-time: ``"17-Jul-1996 02:44:25 -0700"``."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    off = d.utcoffset() or dt.timedelta(0)
    mins = int(off.total_seconds() // 60)
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    s = (
        f"{d.day:02d}-{months[d.month - 1]}-{d.year:04d} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {sign}{mins // 60:02d}{mins % 60:02d}"
    )
    return b'"' + s.encode() + b'"'
