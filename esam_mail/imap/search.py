"""SEARCH: parse RFC 3501 §6.4.4 search keys and evaluate them per message.

Replaces Twisted's fallback search (bug R5: bytes/str TypeError, no empty
``* SEARCH`` line, KEYWORD never matching).  Text keys match case-insensitively
as substrings of the *decoded* text (RFC 2047 headers, transfer encodings and
charsets of text parts).  Cheap keys (flags, sizes, dates, UIDs) are evaluated
before keys that need the message file, so most messages are never read.

Pure: the server provides a :class:`Candidate` per message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .parser import Args, Atom, LimitExceeded, ParseError, SeqSet, String, Token, parse_date

SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")
# Bounds on one SEARCH program (evaluation cost is keys x messages; evaluation and
# parsing recurse once per level).  Real clients stay far below both.
MAX_SEARCH_KEYS = 1000
MAX_SEARCH_DEPTH = 50


class BadCharset(ValueError):
    """CHARSET other than UTF-8/US-ASCII (answer ``NO [BADCHARSET (...)]``)."""


class Candidate(Protocol):
    """What a search key can ask of one message."""

    # read-only members: a candidate may hold them or compute them when a key asks
    @property
    def seq(self) -> int: ...

    @property
    def uid(self) -> int: ...

    @property
    def flags(self) -> frozenset[str]:
        """Including \\Recent when recent."""

    @property
    def modseq(self) -> int:
        """RFC 7162 mod-sequence."""

    @property
    def size(self) -> int: ...

    @property
    def internal_date(self) -> dt.datetime: ...

    def header(self, name: str) -> list[str] | None:
        """Decoded values of a header field (None when absent)."""

    def sent(self) -> dt.date | None:
        """Date of the Date: header, in its own timezone."""

    def body_text(self) -> str:
        """Decoded text of the text parts, casefolded (the server keeps it folded: folding
        a message's text at every TEXT search was most of a search's time, issue 20)."""

    def full_text(self) -> str:
        """Decoded headers plus body text, casefolded."""


# A node is a callable Candidate -> bool plus a cost (0 cheap, 1 headers, 2 body)
@dataclass(frozen=True, slots=True)
class Node:
    test: Callable[[Candidate], bool]
    cost: int


def _fold(s: str) -> str:
    return s.casefold()


def _contains(haystack: str | None, needle: str) -> bool:
    """``needle`` (folded already) in ``haystack``, case-insensitively."""
    return haystack is not None and needle in _fold(haystack)


def _str(args: Args) -> str:
    tok = args.next()
    if isinstance(tok, list):
        raise ParseError("string expected")
    return bytes(tok).decode("utf-8", "replace")


def _flag(name: str, present: bool = True) -> Node:
    return Node(lambda m: (name in m.flags) == present, 0)


def _header_node(name: str, needle: str) -> Node:
    needle = _fold(needle)

    def test(m: Candidate) -> bool:
        values = m.header(name)
        if values is None:
            return False
        if needle == "":
            return True
        return any(_contains(v, needle) for v in values)

    return Node(test, 1)


def _date_node(which: str, op: str, day: dt.date) -> Node:
    def get(m: Candidate) -> dt.date | None:
        if which == "internal":
            return m.internal_date.date()
        return m.sent()

    def test(m: Candidate) -> bool:
        d = get(m)
        if d is None:
            return False
        if op == "before":
            return d < day
        if op == "on":
            return d == day
        return d >= day

    return Node(test, 0 if which == "internal" else 1)


def _and(nodes: Sequence[Node]) -> Node:
    ordered = sorted(nodes, key=lambda n: n.cost)
    if len(ordered) == 1:
        return ordered[0]
    return Node(lambda m: all(n.test(m) for n in ordered), max(n.cost for n in ordered))


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_ADDR_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "TO": "to", "SUBJECT": "subject"}
_DATE_KEYS = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
}


def _key(args: Args, ctx: _Ctx, depth: int = 0) -> Node:
    ctx.keys += 1
    if ctx.keys > MAX_SEARCH_KEYS:
        raise LimitExceeded("search keys", b"SEARCH too complex: at most %d search keys."
                            % MAX_SEARCH_KEYS)
    if depth > MAX_SEARCH_DEPTH:
        raise LimitExceeded("search depth", b"SEARCH too deeply nested: at most %d levels."
                            % MAX_SEARCH_DEPTH)
    tok = args.next()
    if isinstance(tok, list):
        sub = Args(tok)
        nodes = []
        while sub.more():
            nodes.append(_key(sub, ctx, depth + 1))
        if not nodes:
            raise ParseError("empty search group")
        return _and(nodes)
    if isinstance(tok, String):
        raise ParseError("search key expected")
    key = bytes(tok).upper().decode("ascii", "replace")
    if key == "ALL":
        return Node(lambda m: True, 0)
    if key in _FLAG_KEYS:
        return _flag(*_FLAG_KEYS[key])
    if key == "NEW":
        return Node(lambda m: "\\Recent" in m.flags and "\\Seen" not in m.flags, 0)
    if key in ("KEYWORD", "UNKEYWORD"):
        kw = args.atom().decode("utf-8", "replace")
        return _keyword(kw, key == "KEYWORD")
    if key in _ADDR_KEYS:
        return _header_node(_ADDR_KEYS[key], _str(args))
    if key == "HEADER":
        name = _str(args).lower()
        return _header_node(name, _str(args))
    if key in ("BODY", "TEXT"):
        needle = _fold(_str(args))  # the texts come folded (Candidate)
        if key == "BODY":
            return Node(lambda m: needle in m.body_text(), 2)
        return Node(lambda m: needle in m.full_text(), 2)
    if key in _DATE_KEYS:
        which, op = _DATE_KEYS[key]
        tokd = args.next()
        if isinstance(tokd, list):
            raise ParseError("date expected")
        return _date_node(which, op, parse_date(bytes(tokd)))
    if key == "MODSEQ":  # RFC 7162 §3.1.5: [entry-name entry-type] mod-sequence
        if isinstance(args.peek(), String):
            args.next()
            kind = args.atom().upper()
            if kind not in (b"PRIV", b"SHARED", b"ALL"):
                raise ParseError("entry type expected")
        raw = args.atom()
        if not raw.isdigit() or len(raw) > 19:
            raise ParseError("mod-sequence expected")
        floor = int(raw)
        ctx.modseq = True
        return Node(lambda m: m.modseq >= floor, 0)
    if key in ("LARGER", "SMALLER"):
        raw = args.atom()
        if not raw.isdigit() or len(raw) > 20:  # RFC 9051 number64
            raise ParseError("number expected")
        n = int(raw)
        if key == "LARGER":
            return Node(lambda m: m.size > n, 0)
        return Node(lambda m: m.size < n, 0)
    if key == "NOT":
        inner = _key(args, ctx, depth + 1)
        return Node(lambda m: not inner.test(m), inner.cost)
    if key == "OR":
        a = _key(args, ctx, depth + 1)
        b = _key(args, ctx, depth + 1)
        first, second = sorted((a, b), key=lambda n: n.cost)
        return Node(lambda m: first.test(m) or second.test(m), max(a.cost, b.cost))
    if key == "UID":
        raw = args.atom()
        if raw == b"$":  # RFC 5182: the saved result
            return Node(lambda m: m.uid in ctx.saved, 0)
        if b"*" in raw:
            ctx.positional = True  # "*" is the last UID: it moves with every delivery
        in_uids = SeqSet.parse(raw).matcher(ctx.max_uid)
        return Node(lambda m: in_uids(m.uid), 0)
    if key == "$":
        return Node(lambda m: m.uid in ctx.saved, 0)
    if key[:1].isdigit() or key[:1] == "*":
        ctx.positional = True
        in_seqs = SeqSet.parse(bytes(tok)).matcher(ctx.max_seq)
        return Node(lambda m: in_seqs(m.seq), 0)
    raise ParseError("unknown search key")


def _keyword(kw: str, present: bool) -> Node:
    folded = kw.casefold()

    def test(m: Candidate) -> bool:
        has = any(f.casefold() == folded for f in m.flags)
        return has == present

    return Node(test, 0)


@dataclass(slots=True)
class _Ctx:
    max_seq: int
    max_uid: int
    keys: int = 0
    modseq: bool = False
    positional: bool = False  # sequence numbers or "*": the result moves with EXPUNGE/EXISTS
    saved: frozenset[int] = frozenset()  # UIDs of the SEARCHRES result ($)


@dataclass(slots=True)
class Query:
    """A compiled search program."""

    node: Node
    charset: str
    uses_modseq: bool = False  # MODSEQ key: the SEARCH reply carries (MODSEQ n)
    positional: bool = False  # keys on sequence numbers or "*" (RFC 5267 contexts re-run all)
    keys: int = 1  # search keys in the program (the work per message grows with them)

    def matches(self, m: Candidate) -> bool:
        return self.node.test(m)

    @property
    def needs_content(self) -> bool:
        return self.node.cost > 0


def parse_search(tokens: Sequence[Token], *, max_seq: int, max_uid: int,
                 saved: Iterable[int] = ()) -> Query:
    """Compile ``[CHARSET x] key...``.

    Raises:
        BadCharset: unsupported CHARSET.
        ParseError: syntax error.
    """
    args = Args(tokens)
    charset = "UTF-8"
    first = args.peek()
    if isinstance(first, Atom) and first.upper() == b"CHARSET":
        args.next()
        cs = args.astring().decode("ascii", "replace").upper()
        if cs not in SUPPORTED_CHARSETS:
            raise BadCharset(cs)
        charset = cs
    ctx = _Ctx(max_seq, max_uid, saved=frozenset(saved))
    nodes = []
    while args.more():
        nodes.append(_key(args, ctx))
    if not nodes:
        raise ParseError("missing search key")
    return Query(_and(nodes), charset, ctx.modseq, ctx.positional, ctx.keys)
