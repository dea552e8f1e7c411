"""RFC 5267 CONTEXT=SEARCH, CONTEXT=SORT and ESORT; PARTIAL results (RFC 5267 §4.4, with
the negative ranges of RFC 9394).

* ``SEARCH``/``SORT RETURN (...)``: :func:`parse_return` reads the return options (MIN,
  MAX, ALL, COUNT, SAVE of RFC 4731/5182, PARTIAL, UPDATE, the CONTEXT hint) and
  :func:`render` writes the ``* ESEARCH`` answer.  For SORT the message lists follow
  the sort order (ALL and PARTIAL are sets in that order, MIN/MAX its ends).
* ``RETURN (UPDATE ...)`` keeps a search context while the mailbox stays selected.
  :class:`Contexts` (one per session) turns what the selected folder reports as
  changed into ``* ESEARCH (TAG "t") [UID] REMOVEFROM (pos set) ADDTO (pos set)``:
  position 0 for SEARCH contexts, the position in the sorted result for SORT ones
  (removals named where they were, additions where they are).  It runs from the
  session's change reporting (command boundaries and IDLE wake-ups from the change
  notification), never from a timer.  Only the messages whose flags changed or that
  arrived are evaluated again, on the mailbox pool like any SEARCH; a program keyed on
  sequence numbers or ``*`` is run over the folder again (also on the pool).
  Messages about to be reported expunged leave their contexts in a REMOVEFROM sent
  before the EXPUNGE lines, while their sequence numbers still hold.
* The number of live contexts per session is bounded: one over the bound is answered
  with its result and ``* NO [NOUPDATE "t"]`` (the context is not kept).

Pure apart from the mailbox-pool calls (no Twisted).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import mime
from . import sort as sortmod
from .parser import MAX_NUMBER, Atom, ParseError, Token, format_uid_set, quote
from .search import Candidate, Query, parse_search
from .selected import SelectedFolder

log = logging.getLogger(__name__)

DEFAULT_MAX_CONTEXTS = 10  # live UPDATE contexts per session
_INLINE = 64  # changed messages evaluated on the loop when no key reads a message

_SIMPLE = (b"MIN", b"MAX", b"ALL", b"COUNT", b"SAVE")
_PARTIAL_RE = re.compile(rb"(-?)(\d{1,10}):(-?)(\d{1,10})")

#: builds a search candidate on the mailbox pool: (selected, store folder, seq, uid, summary)
CandidateFactory = Callable[[SelectedFolder, Any, int, int, "mime.MessageMeta | None"], Candidate]


@dataclass(frozen=True)
class ReturnOpts:
    """Parsed ``RETURN (...)`` options of SEARCH/SORT."""

    names: frozenset[bytes] = frozenset({b"ALL"})  # of MIN MAX ALL COUNT SAVE
    partial: tuple[int, int] | None = None  # (first, last); both negative: from the end
    update: bool = False

    @property
    def save(self) -> bool:
        return b"SAVE" in self.names

    @property
    def only_save(self) -> bool:
        """RFC 5182 §2.2: SAVE alone answers no ESEARCH at all."""
        return self.names == {b"SAVE"} and self.partial is None and not self.update

    def without_update(self) -> ReturnOpts:
        return ReturnOpts(self.names, self.partial, False)


def parse_return(tokens: Sequence[Token]) -> ReturnOpts:
    """The list after ``RETURN``.

    Raises:
        ParseError: unknown or repeated option, a bad PARTIAL range, PARTIAL with ALL.
    """
    names: set[bytes] = set()
    partial: tuple[int, int] | None = None
    update = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not isinstance(tok, Atom):
            raise ParseError("return option expected")
        word = tok.upper()
        if word in _SIMPLE:
            names.add(word)
        elif word == b"PARTIAL":
            if partial is not None or i >= len(tokens) or not isinstance(tokens[i], Atom):
                raise ParseError("PARTIAL needs one range")
            partial = _parse_partial(bytes(tokens[i]))
            i += 1
        elif word == b"UPDATE":
            if update:
                raise ParseError("UPDATE given twice")
            update = True
        elif word != b"CONTEXT":  # CONTEXT is a hint (RFC 5267 §4.1): nothing to do
            raise ParseError("unknown return option")
    if partial is not None and b"ALL" in names:
        raise ParseError("PARTIAL conflicts with ALL")
    if not names and partial is None and not update:
        names = {b"ALL"}  # RFC 4731 §3.1: RETURN () is RETURN (ALL)
    return ReturnOpts(frozenset(names), partial, update)


def _parse_partial(raw: bytes) -> tuple[int, int]:
    m = _PARTIAL_RE.fullmatch(raw)
    if m is None or m.group(1) != m.group(3):
        raise ParseError("bad PARTIAL range")
    a, b = int(m.group(2)), int(m.group(4))
    if not (0 < a <= MAX_NUMBER and 0 < b <= MAX_NUMBER):
        raise ParseError("bad PARTIAL range")
    a, b = min(a, b), max(a, b)
    return (-a, -b) if m.group(1) else (a, b)


def window(ids: Sequence[int], rng: tuple[int, int]) -> Sequence[int]:
    """The messages at positions ``rng`` of a result (1-based; negative from the end)."""
    a, b = rng
    if a > 0:
        return ids[a - 1 : b]
    n = len(ids)
    end = n + a + 1
    return ids[max(0, n + b) : end] if end > 0 else []


def returned_modseq(opts: ReturnOpts, modseqs: Sequence[int]) -> int:
    """The MODSEQ result option (RFC 4731 §3.2) for a result whose messages have ``modseqs``
    (in result order): MIN alone or MAX alone gives that message's mod-sequence, MIN and MAX
    the higher of the two, otherwise the highest of all messages returned (with PARTIAL
    alone, RFC 5267 §4.4, the messages of the window)."""
    if not modseqs:
        return 0
    if b"ALL" in opts.names or b"COUNT" in opts.names:
        return max(modseqs)
    picked: list[int] = []
    if b"MIN" in opts.names:
        picked.append(modseqs[0])
    if b"MAX" in opts.names:
        picked.append(modseqs[-1])
    if opts.partial is not None:
        picked.extend(window(modseqs, opts.partial))
    return max(picked, default=max(modseqs))


def render(tag: bytes, uid: bool, opts: ReturnOpts, ids: Sequence[int],
           modseq: int = 0) -> bytes | None:
    """``* ESEARCH (TAG "t") [UID] [MIN] [MAX] [ALL] [PARTIAL] [COUNT] [MODSEQ]`` for
    ``ids`` in result order (ascending for SEARCH, the sort order for SORT); None when
    nothing is to be sent (SAVE alone)."""
    if opts.only_save:
        return None
    out = b"* ESEARCH (TAG " + quote(tag) + b")" + (b" UID" if uid else b"")
    if ids and b"MIN" in opts.names:
        out += b" MIN %d" % ids[0]
    if ids and b"MAX" in opts.names:
        out += b" MAX %d" % ids[-1]
    if ids and b"ALL" in opts.names:
        out += b" ALL " + format_uid_set(ids)
    if opts.partial is not None:
        part = window(ids, opts.partial)
        out += b" PARTIAL (%d:%d %s)" % (*opts.partial, format_uid_set(part) if part else b"NIL")
    if b"COUNT" in opts.names:
        out += b" COUNT %d" % len(ids)
    if ids and modseq:
        out += b" MODSEQ %d" % modseq
    return out


async def sort_inputs(sel: SelectedFolder, pairs: Iterable[tuple[int, int]]
                      ) -> list[sortmod.SortKeys]:
    """Sort keys of (seq, uid) pairs from the cached summaries; expunged ones left out."""
    pairs = list(pairs)
    metas = await sel.metas([u for _, u in pairs])
    out = []
    for seq, u in pairs:
        meta, info = metas.get(u), sel.info.get(u)
        if meta is None or info is None:
            continue
        out.append(sortmod.SortKeys(seq, u, info.internal_date.timestamp(), info.size,
                                    meta.sort))
    return out


# -- live contexts ------------------------------------------------------------------------


@dataclass(eq=False)
class SearchContext:
    """One ``RETURN (UPDATE)`` result kept up to date."""

    tag: bytes
    uid: bool  # UID SEARCH/SORT: UIDs, else sequence numbers
    opts: ReturnOpts
    keys: list[Token]  # the search program, CHARSET included
    saved: tuple[int, ...]  # $ (RFC 5182) as it was when the context began
    members: list[int]  # UIDs in result order
    criteria: list[tuple[str, bool]] | None = None  # SORT contexts
    sortkeys: dict[int, sortmod.SortKeys] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # UIDs to evaluate again
    renumbered: bool = False  # an EXPUNGE moved the sequence numbers

    def __post_init__(self) -> None:
        self._order = sortmod.sort_order(self.criteria) if self.criteria is not None else None

    def index(self, uid: int) -> int | None:
        """Position (0-based) of a member, else None."""
        if self._order is None:
            i = bisect.bisect_left(self.members, uid)
        else:
            sk = self.sortkeys.get(uid)
            if sk is None:
                return None
            order, keys = self._order, self.sortkeys
            i = bisect.bisect_left(self.members, order(sk), key=lambda u: order(keys[u]))
        return i if i < len(self.members) and self.members[i] == uid else None

    def insert(self, sk: sortmod.SortKeys | int) -> int:
        """Add a message; returns its position (0-based)."""
        if isinstance(sk, int):
            i = bisect.bisect_left(self.members, sk)
            self.members.insert(i, sk)
            return i
        assert self._order is not None
        order, keys = self._order, self.sortkeys
        i = bisect.bisect_left(self.members, order(sk), key=lambda u: order(keys[u]))
        self.members.insert(i, sk.uid)
        keys[sk.uid] = sk
        return i

    def remove_at(self, i: int) -> None:
        uid = self.members.pop(i)
        self.sortkeys.pop(uid, None)


class Contexts:
    """The live search contexts of one session (see the module docstring)."""

    def __init__(self, limit: int, candidate: CandidateFactory) -> None:
        self.limit = limit
        self._candidate = candidate
        self._live: dict[bytes, SearchContext] = {}
        self._sel: SelectedFolder | None = None
        self._lock = asyncio.Lock()

    def __bool__(self) -> bool:
        return bool(self._live)

    def __contains__(self, tag: bytes) -> bool:
        return tag in self._live

    def full(self) -> bool:
        return len(self._live) >= self.limit

    def add(self, sel: SelectedFolder, ctx: SearchContext) -> None:
        if self._sel is not sel:
            self.clear()
            self._sel = sel
            sel.touched = set()
            sel.on_expunge = self._expunging
        self._live[ctx.tag] = ctx

    def cancel(self, tags: Sequence[bytes]) -> bool:
        """End the contexts of ``tags``; False (and nothing ended) if one is unknown."""
        if any(t not in self._live for t in tags):
            return False
        for t in tags:
            self._live.pop(t, None)
        if not self._live:
            self.clear()
        return True

    def clear(self) -> None:
        """Forget every context (the mailbox was deselected)."""
        self._live.clear()
        if self._sel is not None:
            self._sel.touched = None
            self._sel.on_expunge = None
            self._sel = None

    # -- change reports -------------------------------------------------------------

    def _expunging(self, pairs: list[tuple[int, int]]) -> list[bytes]:
        """SelectedFolder hook: messages (seq, uid) are about to be reported expunged;
        their sequence numbers (and everyone's) still hold."""
        sel = self._sel
        assert sel is not None
        seq_of = {u: s for s, u in pairs}
        lines = []
        for ctx in self._live.values():
            ctx.renumbered = True
            gone = [u for _, u in pairs if ctx.index(u) is not None]
            if not gone:
                continue
            ident: Callable[[int], int] = (
                (lambda u: u) if ctx.uid else (lambda u: seq_of.get(u) or sel.seq_of(u)))
            line = self._apply(ctx, [], gone, ident)
            if line is not None:
                lines.append(line)
        return lines

    async def update(self, sel: SelectedFolder) -> list[bytes]:
        """ESEARCH lines for what changed since the last call (after ``sel.refresh``)."""
        async with self._lock:
            if not self._live or sel is not self._sel:
                return []
            touched = sel.take_touched()
            lines: list[bytes] = []
            for ctx in list(self._live.values()):
                ctx.dirty |= touched
                if self._live.get(ctx.tag) is not ctx or not (ctx.dirty or ctx.renumbered):
                    continue
                try:
                    line = await self._update_one(sel, ctx)
                except Exception:  # a context must not fail the command it rides on
                    log.exception("event=imap.context_update_failed tag=%r", ctx.tag)
                    self._live.pop(ctx.tag, None)
                    lines.append(b"* NO [NOUPDATE " + quote(ctx.tag) + b"] Search context ended.")
                    continue
                if line is not None:
                    lines.append(line)
            return lines

    async def _update_one(self, sel: SelectedFolder, ctx: SearchContext) -> bytes | None:
        dirty, ctx.dirty = ctx.dirty, set()
        ctx.renumbered = False
        top = sel.uids[-1] if sel.uids else 0
        if len(ctx.keys) > 64:
            query = await asyncio.to_thread(parse_search, ctx.keys, max_seq=sel.exists,
                                            max_uid=top, saved=ctx.saved)
        else:
            query = parse_search(ctx.keys, max_seq=sel.exists, max_uid=top, saved=ctx.saved)
        if query.positional:
            matched = await self._evaluate(sel, query, None)
            current = set(ctx.members)
            adds = sorted(matched - current)
            removes = sorted(current - matched)
        else:
            if not dirty:
                return None
            want = sorted(u for u in dirty if u in sel.info and u not in sel.gone)
            matched = await self._evaluate(sel, query, want) if want else set()
            adds = [u for u in want if u in matched and ctx.index(u) is None]
            removes = [u for u in want if u not in matched and ctx.index(u) is not None]
        # the folder may have moved on while the pool worked: only what is still there
        adds = [u for u in adds if u in sel.info and u not in sel.gone and ctx.index(u) is None]
        removes = [u for u in removes if ctx.index(u) is not None]
        if not adds and not removes:
            return None
        new: Sequence[sortmod.SortKeys | int] = adds
        if ctx.criteria is not None and adds:
            keys = await sort_inputs(sel, [(0, u) for u in adds])
            new = [k for k in keys if ctx.index(k.uid) is None]  # (ours while we awaited?)
            removes = [u for u in removes if ctx.index(u) is not None]
        return self._apply(ctx, new, removes, (lambda u: u) if ctx.uid else sel.seq_of)

    @staticmethod
    def _apply(ctx: SearchContext, adds: Sequence[sortmod.SortKeys | int],
               removes: Sequence[int], ident: Callable[[int], int]) -> bytes | None:
        """Change a context; the ESEARCH line that says so (None when nothing changed)."""
        out = b""
        if removes:
            at = sorted((i, u) for u in removes if (i := ctx.index(u)) is not None)
            removed = [(i + 1, ident(u)) for i, u in at]  # numbers before anything moves
            for i, _ in reversed(at):
                ctx.remove_at(i)
            if removed:
                out += b" REMOVEFROM (" + _positions(removed, ctx.criteria is None,
                                                      descending=True) + b")"
        if adds:
            if ctx.criteria is None:
                ordered: list[Any] = sorted(adds)
            else:
                order = sortmod.sort_order(ctx.criteria)
                ordered = sorted(adds, key=order)
            placed = []
            for item in ordered:
                i = ctx.insert(item)
                placed.append((i + 1, ident(item if isinstance(item, int) else item.uid)))
            out += b" ADDTO (" + _positions(placed, ctx.criteria is None) + b")"
        if not out:
            return None
        members = ctx.members
        if members and b"MIN" in ctx.opts.names:
            out += b" MIN %d" % ident(members[0])
        if members and b"MAX" in ctx.opts.names:
            out += b" MAX %d" % ident(members[-1])
        if b"COUNT" in ctx.opts.names:
            out += b" COUNT %d" % len(members)
        return (b"* ESEARCH (TAG " + quote(ctx.tag) + b")" + (b" UID" if ctx.uid else b"")
                + out)

    async def _evaluate(self, sel: SelectedFolder, query: Query,
                        want: list[int] | None) -> set[int]:
        """UIDs among ``want`` (None: the whole folder) matching, evaluated on the pool."""
        make = self._candidate
        if want is not None and len(want) <= _INLINE and not query.needs_content:
            # a few messages and keys on flags, sizes, dates, numbers only: cheaper here
            # than a hop to the pool (nothing is read)
            return {u for u in want if _matches(query, make, sel, None, u, None)}
        metas = (await sel.metas(sel.uids if want is None else want)
                 if query.needs_content else {})

        def run(folder: Any) -> set[int]:
            if want is None:
                pairs = [(i + 1, u) for i, u in enumerate(list(sel.uids)) if u not in sel.gone]
            else:
                pairs = []
                for u in want:
                    try:
                        pairs.append((sel.seq_of(u), u))
                    except KeyError:
                        continue
            out = set()
            for seq, u in pairs:
                try:
                    if query.matches(make(sel, folder, seq, u, metas.get(u))):
                        out.add(u)
                except KeyError:  # expunged meanwhile
                    continue
            return out

        return await sel.view.call(run)


def _matches(query: Query, make: CandidateFactory, sel: SelectedFolder, folder: Any,
             uid: int, meta: mime.MessageMeta | None) -> bool:
    try:
        return query.matches(make(sel, folder, sel.seq_of(uid), uid, meta))
    except KeyError:  # expunged meanwhile
        return False


def _positions(placed: list[tuple[int, int]], unsorted: bool, *,
               descending: bool = False) -> bytes:
    """``context-position SP sequence-set`` pairs (RFC 5267 §5).  SEARCH contexts use
    position 0 and one set; SORT contexts one pair per run of adjacent positions, in the
    order that keeps every position right when the pairs are applied one after another
    (removals last-first, additions first-last)."""
    if unsorted:
        return b"0 " + format_uid_set(sorted(n for _, n in placed))
    runs: list[tuple[int, list[int]]] = []
    for pos, n in sorted(placed):
        if runs and pos == runs[-1][0] + len(runs[-1][1]):
            runs[-1][1].append(n)
        else:
            runs.append((pos, [n]))
    if descending:
        runs.reverse()
    return b" ".join(b"%d %s" % (pos, format_uid_set(ns)) for pos, ns in runs)
