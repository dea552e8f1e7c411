"""RFC 5256 SORT and THREAD: base subjects, sort keys, ORDEREDSUBJECT and REFERENCES.

Pure (no I/O).  The per-message inputs (:class:`SortKeys`) come from the cached
message summary (``mime.MessageMeta.sort``), so sorting a folder reads no files
once the summaries exist.
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# -- base subject (RFC 5256 §2.1) -------------------------------------------------

_WS = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\]\s*"
_REFWD_AT = re.compile(r"(?:re|fwd?)\s*(?:" + _BLOB + r")?:\s*", re.I)  # subj-refwd
_BLOB_AT = re.compile(_BLOB)


def _base_subject(subject: str) -> tuple[str, str]:
    """(base subject upper-cased, the whitespace-normalised subject).

    RFC 5256 §2.1 done with two indices into one string, never a new string per removed
    leader or trailer: every character is passed over a bounded number of times, so a
    hostile Subject ("Re: " or "(fwd)" or "[x]" repeated 50,000 times) costs linear time
    (the regex-and-slice version was quadratic, minutes for 200 KB)."""
    s = _WS.sub(" ", subject).strip()
    i, j = 0, len(s)
    while True:
        # (2) trailing subj-trailer: "(fwd)" and whitespace
        while j > i:
            if s[j - 1] == " ":
                j -= 1
            elif j - i >= 5 and s[j - 5 : j].lower() == "(fwd)":
                j -= 5
            else:
                break
        # (3)-(5): leaders (*subj-blob subj-refwd, or WSP), and a leading blob when text
        # remains after it; a blob before a leader goes by (4) first, then the leader by (3)
        while i < j:
            if s[i] == " ":
                i += 1
                continue
            m = _REFWD_AT.match(s, i, j)
            if m is None:
                m = _BLOB_AT.match(s, i, j)
                if m is None or m.end() >= j:
                    break
            i = m.end()
        # (6) "[fwd:" ... "]" around all of it: unwrap and start again at (2)
        if j - i >= 6 and s[i : i + 5].lower() == "[fwd:" and s[j - 1] == "]":
            i, j = i + 5, j - 1
            while i < j and s[i] == " ":
                i += 1
            while j > i and s[j - 1] == " ":
                j -= 1
            continue
        return s[i:j].upper(), s


def base_subject(subject: str) -> str:
    """The base subject of an (already RFC 2047-decoded) Subject; upper-cased, so
    that comparing base subjects is the i;ascii-casemap comparison RFC 5256 asks."""
    return _base_subject(subject)[0]


def is_reply(subject: str) -> bool:
    """The subject had a reply/forward leader or trailer removed (REFERENCES step 6)."""
    base, s = _base_subject(subject)
    return base != s.upper()


# -- per-message keys ----------------------------------------------------------------


def _first_mailbox(addrs: Iterable[Any] | None) -> str:
    for a in addrs or ():
        if a.mailbox is not None and a.host is not None:
            return a.mailbox.upper()
    return ""


def _first_display(addrs: Iterable[Any] | None, decode: Callable[[str | None], str]) -> str:
    """RFC 5957: the first address's display name, else its addr-spec; casefolded."""
    for a in addrs or ():
        if a.mailbox is not None and a.host is not None:
            name = decode(a.name).strip() if a.name else ""
            return (name or f"{a.mailbox}@{a.host}").casefold()
    return ""


def sort_json(headers: Any, parse_addresses: Callable[[str | None], Any],
              decode: Callable[[str | None], str]) -> dict[str, Any]:
    """The JSON-able sort keys of one message, from its header fields."""
    date = None
    raw = headers.get("date")
    if raw:
        try:
            d = email.utils.parsedate_to_datetime(decode(raw))
            date = d.timestamp() if d is not None else None
        except (TypeError, ValueError, IndexError, OverflowError):
            date = None
    subject = decode(headers.get("subject"))
    base, normalised = _base_subject(subject)
    refs = _MSGID.findall(headers.get("references") or "")
    if not refs:
        irt = _MSGID.findall(headers.get("in-reply-to") or "")
        refs = irt[:1]
    mid = _MSGID.findall(headers.get("message-id") or "")
    frm, to = parse_addresses(headers.get("from")), parse_addresses(headers.get("to"))
    return {
        "d": date,
        "f": _first_mailbox(frm),
        "t": _first_mailbox(to),
        "df": _first_display(frm, decode),
        "dt": _first_display(to, decode),
        "c": _first_mailbox(parse_addresses(headers.get("cc"))),
        "s": base,
        "r": base != normalised.upper(),
        "id": mid[0] if mid else None,
        "refs": refs[-50:],  # the closest 50 ancestors are plenty
    }


_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass(slots=True)
class SortKeys:
    seq: int
    uid: int
    arrival: float  # INTERNALDATE, epoch seconds
    size: int
    keys: dict[str, Any]  # from sort_json

    @property
    def sent(self) -> float:
        """RFC 5256: the Date header, else INTERNALDATE."""
        d = self.keys.get("d")
        return float(d) if d is not None else self.arrival


CRITERIA = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")


def criterion_value(m: SortKeys, c: str) -> Any:
    """The value one sort criterion compares (``c`` from :data:`CRITERIA`)."""
    if c == "ARRIVAL":
        return m.arrival
    if c == "DATE":
        return m.sent
    if c == "SIZE":
        return m.size
    if c == "SUBJECT":
        return m.keys.get("s", "")
    return m.keys.get({"CC": "c", "FROM": "f", "TO": "t", "DISPLAYFROM": "df",
                       "DISPLAYTO": "dt"}[c], "")


def sort_messages(msgs: Sequence[SortKeys], criteria: Sequence[tuple[str, bool]]) -> list[SortKeys]:
    """Sort by ``(criterion, reverse)`` pairs; ties fall back to sequence order."""
    out = sorted(msgs, key=lambda m: m.seq)
    for c, rev in reversed(criteria):  # stable sorts, least significant first
        out.sort(key=lambda m, c=c: criterion_value(m, c), reverse=rev)  # type: ignore[misc]
    return out


def sort_order(criteria: Sequence[tuple[str, bool]]) -> Callable[[SortKeys], Any]:
    """A key function giving the order of :func:`sort_messages` (ties: UID, which runs
    like the sequence number), for placing one message into a sorted result."""

    def compare(a: SortKeys, b: SortKeys) -> int:
        for c, rev in criteria:
            x, y = criterion_value(a, c), criterion_value(b, c)
            if x != y:
                return (1 if x > y else -1) * (-1 if rev else 1)
        return (a.uid > b.uid) - (a.uid < b.uid)

    return functools.cmp_to_key(compare)


# -- THREAD (RFC 5256 §3) ---------------------------------------------------------------


@dataclass(eq=False)
class Node:
    msg: SortKeys | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    def sent(self) -> float:
        if self.msg is not None:
            return self.msg.sent
        return min((c.sent() for c in self.children), default=0.0)

    def seq(self) -> int:
        if self.msg is not None:
            return self.msg.seq
        return min((c.seq() for c in self.children), default=0)

    def has_ancestor(self, other: Node) -> bool:
        p: Node | None = self
        while p is not None:
            if p is other:
                return True
            p = p.parent
        return False


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _by_date(nodes: list[Node]) -> None:
    nodes.sort(key=lambda n: (n.sent(), n.seq()))


def thread_orderedsubject(msgs: Sequence[SortKeys]) -> list[Node]:
    """ORDEREDSUBJECT: group by base subject; the first by sent date is the parent of
    the rest; threads ordered by their first message's sent date."""
    groups: dict[str, list[SortKeys]] = {}
    for m in sorted(msgs, key=lambda m: (m.keys.get("s", ""), m.sent, m.seq)):
        groups.setdefault(m.keys.get("s", ""), []).append(m)
    roots = []
    for members in groups.values():
        root = Node(members[0])
        for m in members[1:]:
            _link(root, Node(m))
        roots.append(root)
    _by_date(roots)
    return roots


def thread_references(msgs: Sequence[SortKeys]) -> list[Node]:
    """REFERENCES (RFC 5256 §3, after Jamie Zawinski's algorithm)."""
    table: dict[str, Node] = {}
    for m in sorted(msgs, key=lambda m: m.seq):
        mid = m.keys.get("id")
        if not mid or (mid in table and table[mid].msg is not None):
            mid = f"<esam-unique-{m.uid}>"  # (1A) missing or duplicate Message-ID
        node = table.setdefault(mid, Node())
        node.msg = m
        prev: Node | None = None
        for ref in m.keys.get("refs") or ():  # (1B) link the References chain
            cur = table.setdefault(ref, Node())
            if (prev is not None and cur.parent is None and not prev.has_ancestor(cur)
                    and cur is not node):
                _link(prev, cur)
            prev = cur
        if node.parent is not None:  # (1C) the last reference is the parent
            node.parent.children.remove(node)
            node.parent = None
        if prev is not None and prev is not node and not prev.has_ancestor(node):
            _link(prev, node)
    roots = [n for n in table.values() if n.parent is None]  # (2)
    roots = _prune(roots, at_root=True)  # (4)
    _by_date(roots)  # (5)
    roots = _gather_subjects(roots)  # (6)
    _sort_tree(roots)  # (7)
    return roots


def _prune(nodes: list[Node], *, at_root: bool) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        n.children = _prune(n.children, at_root=False)
        for c in n.children:
            c.parent = n
        if n.msg is None:
            if not n.children:
                continue  # (4A) an empty dummy
            if not at_root or len(n.children) == 1:
                for c in n.children:  # (4B) promote the children
                    c.parent = n.parent
                out.extend(n.children)
                continue
        out.append(n)
    return out


def _subject_of(n: Node) -> tuple[str, bool]:
    m = n.msg if n.msg is not None else min(
        (c.msg for c in n.children if c.msg is not None), key=lambda x: (x.sent, x.seq),
        default=None)
    if m is None:
        return "", False
    return m.keys.get("s", ""), bool(m.keys.get("r"))


def _gather_subjects(roots: list[Node]) -> list[Node]:
    """(6): merge root threads that share a base subject."""
    table: dict[str, Node] = {}
    for n in roots:  # (6B) one thread per subject: dummies first, then non-replies
        subj, reply = _subject_of(n)
        if not subj:
            continue
        old = table.get(subj)
        if (old is None or (old.msg is not None and n.msg is None)
                or (old.msg is not None and n.msg is not None
                    and _subject_of(old)[1] and not reply)):
            table[subj] = n
    out: list[Node] = []
    for n in roots:  # (6C)
        if n.parent is not None:
            continue  # already merged into a thread met earlier
        subj, reply = _subject_of(n)
        keep = table.get(subj) if subj else None
        if keep is None or keep is n:
            out.append(n)
            continue
        if keep.msg is None and n.msg is None:  # both dummies: pool the children
            for c in list(n.children):
                _link(keep, c)
        elif keep.msg is None or (not _subject_of(keep)[1] and reply):  # the message joins the dummy
            _link(keep, n)
        else:  # siblings under a new dummy, in the kept thread's place
            dummy = Node()
            _link(dummy, keep)
            _link(dummy, n)
            table[subj] = dummy
            if keep in out:
                out = [dummy if x is keep else x for x in out]
            else:
                out.append(dummy)
    return out


def _sort_tree(nodes: list[Node]) -> None:
    _by_date(nodes)
    for n in nodes:
        _sort_tree(n.children)


def render_threads(roots: Sequence[Node], ident: Callable[[SortKeys], int]) -> bytes:
    """``(1 2 (3)(4 5))(6)`` per RFC 5256 §4 (thread-list)."""

    def render(n: Node) -> str:
        parts: list[str] = []
        if n.msg is not None:
            parts.append(str(ident(n.msg)))
        kids = n.children
        while len(kids) == 1 and n.msg is not None:
            n = kids[0]
            if n.msg is not None:
                parts.append(str(ident(n.msg)))
            kids = n.children
        if kids:
            parts.append("".join("(" + render(k) + ")" for k in kids))
        return " ".join(parts)

    return "".join("(" + render(r) + ")" for r in roots).encode()
