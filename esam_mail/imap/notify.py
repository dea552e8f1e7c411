"""NOTIFY (RFC 5465): unsolicited updates about the selected and other mailboxes.

``NOTIFY SET [STATUS] (filter events) ...`` replaces the session's :class:`NotifyState`;
``NOTIFY NONE`` drops it.  The state is driven by the change notification the IDLE push
already uses (``IMAPFactory._on_change``, the store's ``Notifier``): nothing polls, and a
change costs one name match per session of the user plus, when it is watched, one STATUS
of that one folder on the mailbox pool (never a walk over all folders).

What is sent:

- the selected mailbox (``SELECTED``/``SELECTED-DELAYED``): EXISTS, RECENT, FETCH of flag
  changes, EXPUNGE (VANISHED under QRESYNC) at once when no command runs; with
  ``SELECTED-DELAYED`` expunges wait for a command that may report them (or IDLE);
  ``MessageNew (fetch-att ...)`` adds a FETCH of the new messages (never setting \\Seen);
- another mailbox: ``* STATUS name (UIDVALIDITY n UIDNEXT n MESSAGES n UNSEEN n
  [HIGHESTMODSEQ n])`` when its counters changed (``FlagChange`` also for UNSEEN or
  HIGHESTMODSEQ alone; HIGHESTMODSEQ whenever FlagChange is watched or CONDSTORE enabled);
- ``MailboxName``: ``* LIST () "/" name`` (created), ``* LIST (\\NonExistent) "/" name``
  (deleted), ``* LIST () "/" new ("OLDNAME" ("old"))`` (renamed);
- ``SubscriptionChange``: ``* LIST (\\Subscribed) "/" name`` or ``* LIST () "/" name``.

Notifications wait while a command runs (they go out when it ends, or during IDLE); at
most :data:`MAX_QUEUE` wait per session.  Beyond that the session gets ``* OK
[NOTIFICATIONOVERFLOW]`` and NOTIFY is off (RFC 5465 §6).  AnnotationChange,
MailboxMetadataChange and ServerMetadataChange are answered ``NO [BADEVENT (...)]``: there
is no METADATA/ANNOTATE here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from esam_mail import errors

from .parser import (
    Args,
    Atom,
    FetchItem,
    ParseError,
    String,
    Token,
    decode_mailbox,
    encode_mailbox,
    parse_fetch_atts,
    quote,
)

log = logging.getLogger(__name__)

#: notifications that may wait for a session before it is told NOTIFICATIONOVERFLOW
MAX_QUEUE = 500
#: mailbox names in one NOTIFY command (SUBTREE/MAILBOXES), all groups together
MAX_NAMES = 1000
#: event groups in one NOTIFY command
MAX_GROUPS = 64

SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
_CANON = {e.upper(): e for e in SUPPORTED}
_UNSUPPORTED = {e.upper(): e for e in ("AnnotationChange", "MailboxMetadataChange",
                                      "ServerMetadataChange")}
_MESSAGE_EVENTS = {"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"}
_SELECTED = ("SELECTED", "SELECTED-DELAYED")
_FILTERS = (*_SELECTED, "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")


class BadEvent(Exception):
    """An event this server does not support: ``NO [BADEVENT (supported ...)]``."""


@dataclass(frozen=True)
class Group:
    """One event group: a mailbox filter and the events wanted for it."""

    kind: str  # one of _FILTERS
    names: tuple[str, ...] = ()  # SUBTREE / MAILBOXES
    events: frozenset[str] = frozenset()  # empty: NONE
    fetch: tuple[FetchItem, ...] = ()  # MessageNew (fetch-att ...), selected mailbox only

    def matches(self, name: str, subscribed: set[str]) -> bool:
        if self.kind == "PERSONAL":
            return True  # every mailbox here is in the personal namespace
        if self.kind == "INBOXES":
            return name == "INBOX"  # the only mailbox mail is delivered to
        if self.kind == "SUBSCRIBED":
            return name in subscribed
        if self.kind == "MAILBOXES":
            return name in self.names
        if self.kind == "SUBTREE":
            return any(name == n or name.startswith(n + "/") for n in self.names)
        return False


@dataclass
class Spec:
    """A parsed ``NOTIFY SET``."""

    status: bool
    selected: Group | None
    others: list[Group] = field(default_factory=list)

    def group_for(self, name: str, subscribed: set[str]) -> Group | None:
        """The first non-selected group whose filter covers ``name`` (RFC 5465 §6)."""
        for g in self.others:
            if g.matches(name, subscribed):
                return g
        return None


def parse(args: Args, normalise: Any) -> Spec | None:
    """``NOTIFY NONE`` -> None; ``NOTIFY SET ...`` -> :class:`Spec`.

    Raises ParseError (BAD) for bad syntax or event combinations, :class:`BadEvent` (NO)
    for an event we do not support.  ``normalise`` canonicalises a mailbox name.
    """
    verb = args.atom().upper()
    if verb == b"NONE":
        args.end()
        return None
    if verb != b"SET":
        raise ParseError("NOTIFY SET or NOTIFY NONE expected")
    status = False
    if isinstance(args.peek(), Atom) and bytes(args.peek()).upper() == b"STATUS":  # type: ignore[arg-type]
        args.next()
        status = True
    groups = args.rest()
    if not groups or len(groups) > MAX_GROUPS:
        raise ParseError("event groups expected")
    spec = Spec(status, None)
    names = 0
    for raw in groups:
        if not isinstance(raw, list) or not raw:
            raise ParseError("event group expected")
        group = _group(raw, normalise)
        names += len(group.names)
        if names > MAX_NAMES:
            raise ParseError("too many mailboxes")
        if group.kind in _SELECTED:
            if spec.selected is not None:
                raise ParseError("SELECTED given twice")
            spec.selected = group
        else:
            spec.others.append(group)
    return spec


def _group(raw: list[Token], normalise: Any) -> Group:
    head = raw[0]
    if not isinstance(head, Atom) or bytes(head).upper().decode() not in _FILTERS:
        raise ParseError("unknown mailbox filter")
    kind = bytes(head).upper().decode()
    rest = raw[1:]
    names: list[str] = []
    if kind in ("SUBTREE", "MAILBOXES"):
        if not rest:
            raise ParseError("mailbox expected")
        first, rest = rest[0], rest[1:]
        for tok in first if isinstance(first, list) else [first]:
            if not isinstance(tok, Atom | String) or isinstance(tok, list):
                raise ParseError("mailbox expected")
            names.append(normalise(decode_mailbox(bytes(tok))))
    if len(rest) == 1 and isinstance(rest[0], Atom) and rest[0].upper() == b"NONE":
        return Group(kind, tuple(names))
    if len(rest) == 1 and isinstance(rest[0], list):
        rest = rest[0]  # (event event ...): the grammar's form
    # else: events not in parentheses, as in RFC 5465 §3.1's own example
    if not rest:
        raise ParseError("events expected")
    events: set[str] = set()
    fetch: tuple[FetchItem, ...] = ()
    unsupported: list[str] = []
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not isinstance(tok, Atom):
            raise ParseError("event expected")
        up = bytes(tok).upper().decode("ascii", "replace")
        i += 1
        if up in _UNSUPPORTED:
            unsupported.append(_UNSUPPORTED[up])
            continue
        if up not in _CANON:
            raise BadEvent(up)
        event = _CANON[up]
        events.add(event)
        if event == "MessageNew" and i < len(rest) and isinstance(rest[i], list):
            # a FETCH of new messages must not set \Seen: every item is a PEEK
            fetch = tuple(dataclasses.replace(it, peek=True) for it in parse_fetch_atts(rest[i]))
            i += 1
    if unsupported:
        raise BadEvent(unsupported[0])
    if ("MessageNew" in events) != ("MessageExpunge" in events):
        raise ParseError("MessageNew and MessageExpunge go together")
    if "FlagChange" in events and "MessageNew" not in events:
        raise ParseError("FlagChange needs MessageNew and MessageExpunge")
    if kind in _SELECTED and events - _MESSAGE_EVENTS:
        raise ParseError("only message events for the selected mailbox")
    return Group(kind, tuple(names), frozenset(events), fetch)


def badevent_code() -> bytes:
    return b"BADEVENT (" + " ".join(SUPPORTED).encode() + b")"


# ---------------------------------------------------------------------------


_SELECTED_KEY = "\x00selected"


class NotifyState:
    """One session's NOTIFY: the spec, the waiting notifications and their delivery.

    ``session`` is the :class:`~esam_mail.imap.server.EsamIMAP4Server`; the hooks it
    calls are :meth:`on_change`, :meth:`on_list_event` (from the factory's dispatch) and
    :meth:`kick` (when a command ends).
    """

    def __init__(self, session: Any, spec: Spec, subscribed: set[str]) -> None:
        self.s = session
        self.spec = spec
        self.subscribed = subscribed
        self.active = True
        # folder -> None (counters to check), _SELECTED_KEY, or ("list", line) entries
        self._queue: OrderedDict[Any, Any] = OrderedDict()
        self._seq = 0
        self._last: dict[str, tuple[int, ...]] = {}  # the counters last sent per mailbox
        self._draining = False
        self._owned = False  # the delivery holds the session's command slot
        self._task: asyncio.Future[None] | None = None

    # -- what is watched ---------------------------------------------------------------
    def watches_selected(self) -> bool:
        """The selected mailbox's changes are pushed by NOTIFY (not only the IDLE push)."""
        g = self.spec.selected
        return self.active and g is not None and bool(g.events)

    def _message_group(self, name: str) -> Group | None:
        g = self.spec.group_for(name, self.subscribed)
        return g if g is not None and "MessageNew" in g.events else None

    # -- events in -----------------------------------------------------------------------
    def on_change(self, folder: str) -> None:
        """Something in ``folder`` changed (messages, flags; or it was deleted)."""
        if not self.active:
            return
        sel = self.s.selected
        if sel is not None and sel.name == folder:
            if self.watches_selected():
                self._put(_SELECTED_KEY, None)
            return
        if self._message_group(folder) is not None:
            self._put(("status", folder), folder)

    def on_list_event(self, kind: str, names: list[str]) -> None:
        """A mailbox was created, deleted, renamed, (un)subscribed."""
        want = "SubscriptionChange" if kind in ("subscribe", "unsubscribe") else "MailboxName"
        # a SUBSCRIBED filter covers the name before or after the change
        wanted = self.active and any(self._wants(n, want) for n in names)
        if kind == "subscribe":
            self.subscribed.add(names[0])
        elif kind == "unsubscribe":
            self.subscribed.discard(names[0])
        elif kind == "rename" and names[0] in self.subscribed:
            self.subscribed.discard(names[0])
            self.subscribed.add(names[1])
        if not self.active or not (wanted or any(self._wants(n, want) for n in names)):
            return
        name = names[-1]
        if kind == "create":
            line = b'* LIST () "/" ' + _mailbox(name)
        elif kind == "delete":
            line = b'* LIST (\\NonExistent) "/" ' + _mailbox(name)
            self._last.pop(name, None)
        elif kind == "rename":
            line = (b'* LIST () "/" ' + _mailbox(name) + b' ("OLDNAME" ('
                    + _mailbox(names[0]) + b"))")
            self._last.pop(names[0], None)
        else:
            attrs = b"\\Subscribed" if kind == "subscribe" else b""
            line = b"* LIST (" + attrs + b') "/" ' + _mailbox(name)
        self._seq += 1
        self._put(("list", self._seq), line)

    def _wants(self, name: str, event: str) -> bool:
        g = self.spec.group_for(name, self.subscribed)
        return g is not None and event in g.events

    def _put(self, key: Any, value: Any) -> None:
        if key in self._queue:
            return  # already waiting: one STATUS (or refresh) covers both changes
        if len(self._queue) >= MAX_QUEUE:
            self._overflow()
            return
        self._queue[key] = value
        self.kick()

    def _overflow(self) -> None:
        self.active = False
        self._queue.clear()
        log.info("event=imap.notify_overflow session=%s", self.s.session)
        if self.s.transport is not None and not self.s._closing:
            self.s._untagged(b"* OK [NOTIFICATIONOVERFLOW] Too many notifications; "
                             b"NOTIFY is off.")

    # -- delivery -------------------------------------------------------------------------
    def _may_send(self) -> bool:
        s = self.s
        return (s.transport is not None and not s._closing and not s.output_paused()
                and (not s._busy or s._idle_tag is not None))

    def kick(self) -> None:
        """Deliver what waits, if no command is running (or IDLE is)."""
        if self._draining or not self._queue or not self._may_send():
            return
        self._draining = True
        # outside IDLE the delivery takes the command slot at once: no command may start
        # (and see the selected mailbox change under it) until it is done
        self._owned = not self.s._busy
        if self._owned:
            self.s._busy = True
        fut = asyncio.ensure_future(self._drain())
        self._task = fut
        _TASKS.add(fut)
        fut.add_done_callback(_TASKS.discard)

    async def settle(self) -> None:
        """Wait until a delivery in progress is over (IDLE ends only after it)."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _drain(self) -> None:
        s = self.s
        try:
            while self._queue and self.active and s.transport is not None and not s._closing:
                key, value = self._queue.popitem(last=False)
                if key == _SELECTED_KEY:
                    await self._selected()
                elif key[0] == "status":
                    await self._status(value)
                else:
                    s._untagged(value)
        except Exception:
            log.exception("event=imap.notify_failed session=%s", s.session)
        finally:
            self._draining = False
            if self._owned:
                self._owned = False
                s._busy = False
                if s.transport is not None and not s._closing:
                    asyncio.get_running_loop().call_soon(s._pump)  # commands that came meanwhile
            if self._queue and self.active:
                self.kick()

    async def _selected(self) -> None:
        s = self.s
        sel = s.selected
        g = self.spec.selected
        if sel is None or g is None:
            return
        top = sel.uids[-1] if sel.uids else 0
        delayed = g.kind == "SELECTED-DELAYED" and s._idle_tag is None
        await s._report_changes(allow_expunge=not delayed)
        if g.fetch and s.selected is sel:
            new = [(i + 1, u) for i, u in enumerate(sel.uids) if u > top and u not in sel.gone]
            if new:
                await s._fetch(None, sel, new, list(g.fetch))

    async def _status(self, name: str) -> None:
        s = self.s
        if s.selected is not None and s.selected.name == name:
            return  # selected meanwhile: its updates come the selected way
        g = self._message_group(name)
        if g is None or s.user is None:
            return
        try:
            st = await s.user.status(name)
        except (errors.NoSuchFolder, errors.BadFolderName):
            self._last.pop(name, None)
            return
        line = self.status_line(name, st, g, force=False)
        if line is not None:
            s._untagged(line)

    def status_line(self, name: str, st: Any, g: Group, *, force: bool) -> bytes | None:
        """``* STATUS`` for ``name`` if its counters changed since the last one sent."""
        # RFC 5465 section 5.2: FlagChange on a mailbox that is not selected is told through
        # STATUS, and only HIGHESTMODSEQ (RFC 7162) shows a change UNSEEN does not (a keyword,
        # \Flagged): sent whenever FlagChange is watched, as with CONDSTORE enabled.
        with_modseq = self.s.condstore or "FlagChange" in g.events
        modseq = st.extra.get("highestmodseq", 0) if with_modseq else None
        counters = (st.uidvalidity, st.uidnext, st.messages)
        flags = (st.unseen, modseq or 0)
        last = self._last.get(name)
        self._last[name] = counters + flags
        if (not force and last is not None and last[:3] == counters
                and ("FlagChange" not in g.events or last[3:] == flags)):
            return None
        body = b"UIDVALIDITY %d UIDNEXT %d MESSAGES %d UNSEEN %d" % (*counters, st.unseen)
        if modseq is not None:
            body += b" HIGHESTMODSEQ %d" % modseq
        return b"* STATUS " + _mailbox(name) + b" (" + body + b")"

    async def initial_status(self) -> None:
        """``NOTIFY SET STATUS``: one STATUS per watched mailbox but the selected one."""
        s = self.s
        folders = await s.user.list_folders()
        selected = s.selected.name if s.selected is not None else None
        for f in folders:
            if f.noselect or f.name == selected:
                continue
            g = self._message_group(f.name)
            if g is None:
                continue
            with contextlib.suppress(errors.NoSuchFolder, errors.BadFolderName):
                st = await s.user.status(f.name)
                line = self.status_line(f.name, st, g, force=True)
                if line is not None:
                    s._untagged(line)


_TASKS: set[asyncio.Future[None]] = set()


def _mailbox(name: str) -> bytes:
    return quote(encode_mailbox(name))
