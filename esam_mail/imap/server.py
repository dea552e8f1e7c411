"""IMAP4rev1 server: ``EsamIMAP4Server`` on Twisted, backed by the esam store.

Twisted's ``IMAP4Server`` supplies the connection plumbing (LineReceiver,
TimeoutMixin, STARTTLS via ``transport.startTLS``); everything from command
framing up is ours, because the stock command layer has the bugs listed in
docs/libraries.md §1.6 (R1-R7, R11, raw exception text in replies).  Commands
are framed here (literals, LITERAL-, size caps before the ``+``), tokenized by
:mod:`.parser`, run strictly one at a time per connection (pipelining-safe:
nothing is parsed while a command runs) and answered through the async mailbox
service (``services.mailflow.mailboxes``): every store call runs off the event loop on a
bounded pool, serialized per folder, so one big mailbox never freezes SMTP, HTTP
or the other sessions.  APPEND literals above ``SPOOL_THRESHOLD`` go straight to
a file in the user's store as they arrive (RSS does not grow with their size).

RFCs: 3501 (IMAP4rev1), 2177 (IDLE), 2342 (NAMESPACE), 4315 (UIDPLUS), 6851
(MOVE), 3691 (UNSELECT), 2971 (ID), 5161 (ENABLE), 6154 (SPECIAL-USE), 3348
(CHILDREN), 2087/9208 (QUOTA), 7888 (LITERAL-), 4959 (SASL-IR), 4616 (PLAIN),
5530 (response codes), 2595/8314 (STARTTLS, implicit TLS), 9051 (IMAP4rev2 after
ENABLE IMAP4rev2: see ``rev2``), 8438 (STATUS=SIZE).

The composition root must install ``twisted.internet.asyncioreactor`` before
anything imports ``twisted.internet.reactor``; this module imports the reactor
only inside functions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import re
import time
import zlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, interfaces, protocol, tcp
from twisted.mail import imap4
from zope.interface import implementer

from esam_mail import __version__ as _version
from esam_mail import errors
from esam_mail.imap.tlsreload import ReloadableTLS, tls_options
from esam_mail.log import TRACE, redact
from esam_mail.services.auth import Authenticator, Principal
from esam_mail.services.mailflow.mailboxes import (
    SPECIAL_USE,
    SYSTEM_FLAGS,
    FolderInfo,
    MailboxService,
    MailboxStore,
    MailboxView,
    Notifier,
    Spool,
    UserMailboxes,
    parse_list_event,
)

from . import catenate as catmod
from . import context as ctxmod
from . import metrics as imap_metrics
from . import mime, replies, textcache
from . import notify as notifymod
from . import sort as sortmod
from .compress import DeflateTransport, Inflater
from .parser import (
    Args,
    Atom,
    FetchItem,
    MailboxNameError,
    ParseError,
    SeqSet,
    String,
    Token,
    decode_mailbox,
    encode_mailbox,
    format_uid_set,
    literal_at_end,
    parse_datetime,
    parse_fetch_atts,
    quote,
    tokenize,
)
from .search import SUPPORTED_CHARSETS, BadCharset, Query, parse_search
from .selected import INLINE_MAX, SelectedFolder, UidValidityChanged, format_flags

log = logging.getLogger(__name__)

_TAG_RE = re.compile(rb"^[\x21-\x7e]+$")
_FLAG_ATOM_RE = re.compile(r"^\\?[^\s(){%*\"\\\]\x00-\x1f\x7f]+$")


DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
DEFAULT_AUTH_TIMEOUT = 30 * 60.0


@dataclass(frozen=True)
class IMAPLimits:
    """Resource limits of one IMAP listener (config section ``[imap]``)."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # APPEND literal cap (checked before "+")
    max_line: int = 64 * 1024  # one command line, without literals
    max_command_literals: int = 256 * 1024  # all literals of a non-APPEND command
    nonsync_literal_max: int = 4096  # LITERAL- (RFC 7888)
    unauth_timeout: float = 60.0
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT  # >= 29 min for IDLE (RFC 2177)
    idle_poll: float = 5.0  # safety-net rescan while IDLE; the Notifier is the fast path
    max_auth_failures: int = 3
    max_connections_per_ip: int = 0  # 0: unlimited
    meta_cache_entries: int = 20000
    store_workers: int = 2  # threads of the mailbox service's pool (per process)
    spool_threshold: int = 64 * 1024  # APPEND literals above this go to a file
    max_multiappend: int = 100  # messages in one APPEND (RFC 3502); all of them <= 4x the cap
    allow_plaintext_auth: bool = False  # never in production: LOGINDISABLED until TLS
    close_grace: float = 2.0  # after LOGOUT/BYE: abort a transport the peer keeps half-open
    max_search_contexts: int = ctxmod.DEFAULT_MAX_CONTEXTS  # RFC 5267 UPDATE contexts per session
    # a client that stops reading: dropped when its output has not drained for this long,
    # or when this much more was written to it meanwhile (see _OutputGate)
    output_stall_timeout: float = 60.0
    max_output_backlog: int = 8 * 1024 * 1024


# ---------------------------------------------------------------------------


@implementer(interfaces.IPushProducer)
class _OutputGate:
    """The session's producer for its whole life: output toward a client that stops reading.

    Registered on the transport at connect; Twisted pauses it when the transport's own
    buffer passes 64 KiB (the kernel's buffers being full already) and resumes it once
    the buffer is drained.  While paused the session starts no new command, delays the
    unsolicited updates (they are a diff of the selected folder's state, sent later),
    and long responses wait in :meth:`wait`.  :attr:`backlog` counts what was still
    written meanwhile; the session drops a client that lets it grow past
    ``limits.max_output_backlog`` or stays paused for ``limits.output_stall_timeout``.
    """

    def __init__(self, on_pause: Callable[[], None], on_resume: Callable[[], None]) -> None:
        self.paused = False
        self.stopped = False
        self.backlog = 0  # octets written since the pause
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._waiting: list[asyncio.Future[None]] = []  # one per writer: command, IDLE, NOTIFY

    def pauseProducing(self) -> None:
        if self.paused or self.stopped:
            return
        self.paused = True
        self.backlog = 0
        self._on_pause()

    def resumeProducing(self) -> None:
        was = self.paused
        self.paused = False
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)
        if was and not self.stopped:
            self._on_resume()

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()

    async def wait(self) -> None:
        """Return once the transport has room (or the connection is gone)."""
        if not self.paused or self.stopped:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        await fut


class _Done(Exception):
    """Internal: a handler already sent its own tagged reply."""


class SpooledString(String):
    """An APPEND literal that was written to a spool file instead of RAM.

    Tokenized like any literal (a :class:`String`, empty as bytes); the command
    takes the message from :attr:`spool`.
    """

    def __new__(cls, spool: Spool) -> SpooledString:
        self = super().__new__(cls, b"")
        self.spool = spool
        return self

    spool: Spool


SPOOL_BACKLOG = 1024 * 1024  # spooled bytes waiting for the disk before reads pause


class EsamIMAP4Server(imap4.IMAP4Server):
    """One IMAP connection.  See the module docstring."""

    IDENT = b"esam_mail IMAP4rev1 ready."
    transport: Any  # Twisted's zope interfaces are opaque to mypy without mypy-zope

    def __init__(self, factory: IMAPFactory, *, implicit_tls: bool) -> None:
        super().__init__(
            chal={}, contextFactory=None if implicit_tls else factory.tls_context_factory
        )
        self.factory = factory
        self.limits = factory.limits
        self.implicit_tls = implicit_tls
        self.session = _new_session_id()
        self.peer = "-"
        self.principal: Principal | None = None
        self.user: UserMailboxes | None = None
        self.selected: SelectedFolder | None = None
        self._lit_spool: Spool | None = None  # the APPEND literal being spooled
        self._spools: list[Spool] = []  # spools of the command being read or run
        self._idle_refreshing = False
        self._idle_again = False
        self._buf = bytearray()
        self._lines: list[bytes] = []
        self._lits: list[bytes] = []
        self._cmd_literal_bytes = 0
        self._lit_need = -1  # >= 0 while reading a literal
        self._lit_discard = False  # the literal's octets are read and dropped
        self._toobig_tag: bytes | None = None  # the command being read will get NO [TOOBIG]
        self._lit_buf = bytearray()
        self._busy = False
        # a running command's output, written as one piece when it ends (see _out)
        self._held: list[bytes] | None = None
        self._held_size = 0
        self._line_hook: Callable[[bytes], None] | None = None
        self._idle_tag: bytes | None = None
        self._idle_poll: Any = None
        self._auth_failures = 0
        self._opened = time.monotonic()
        self._transport_paused = False
        self._closing = False
        self._abort_timer: Any = None
        self.condstore = False  # RFC 7162: enabled by ENABLE or a CONDSTORE-enabling command
        self.qresync = False  # RFC 7162 §3.2: only by ENABLE QRESYNC
        self.saved: list[int] = []  # RFC 5182 SEARCHRES: UIDs of the result saved as $
        self.rev2 = False  # RFC 9051: after ENABLE IMAP4rev2
        self._contexts = ctxmod.Contexts(self.limits.max_search_contexts, _Candidate)  # RFC 5267
        self._unknown_cte = False  # a BINARY fetch met an encoding it cannot decode
        self._zin: Inflater | None = None  # COMPRESS=DEFLATE (RFC 4978): the client's stream
        self.notify: notifymod.NotifyState | None = None  # NOTIFY SET (RFC 5465)
        self._gate = _OutputGate(self._output_paused, self._output_resumed)
        self._stall_timer: Any = None
        self._changes_waiting = False  # an IDLE push delayed while the output was full
        self._idle_task: asyncio.Future[None] | None = None
        self._idle_done: asyncio.Future[None] | None = None  # resolved by DONE (or a drop)
        self.timeOut = int(self.limits.unauth_timeout)

    # -- connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        with contextlib.suppress(Exception):
            self.peer = self.transport.getPeer().host
        limit = self.limits.max_connections_per_ip
        if limit and sum(1 for x in self.factory.sessions if x.peer == self.peer) >= limit:
            log.warning("event=imap.too_many_connections session=%s peer=%s",
                        self.session, self.peer)
            self._write(b"* BYE [UNAVAILABLE] Too many connections from your address.")
            self.close_connection()
            return
        self.factory.sessions.add(self)
        self.transport.registerProducer(self._gate, True)
        # A reply often leaves in two writes a loop turn apart (untagged lines, then the
        # tagged line after the folder refresh): with Nagle the second waits for the
        # client's delayed ACK, 40 ms a command.  IMAP is request/response: no Nagle.
        with contextlib.suppress(Exception):
            self.transport.setTcpNoDelay(True)
        imap_metrics.connected(self.implicit_tls)
        log.info(
            "event=imap.connect session=%s peer=%s tls=%s",
            self.session, self.peer, "implicit" if self.implicit_tls else "none",
        )
        super().connectionMade()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.sessions.discard(self)
        # pipelined commands still in the input buffer are not run for a gone client
        self._closing = True
        self._buf.clear()
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self._abort_timer = None
        self._cancel_stall_timer()
        self._gate.stopProducing()  # wakes whatever waits for room
        self._stop_idle_poll()
        idle, self._idle_done = self._idle_done, None
        if idle is not None and not idle.done():  # no DONE will come: IDLE ends quietly
            idle.set_exception(_Done())
        self.selected = None
        self._drop_spools()
        if isinstance(self.transport, DeflateTransport):
            self.transport.stop()
        if self.notify is not None:
            self.notify.active = False
            self.notify = None
        log.info(
            "event=imap.disconnect session=%s peer=%s user=%s duration=%.1f",
            self.session, self.peer, self.principal.login if self.principal else "-",
            time.monotonic() - self._opened,
        )
        super().connectionLost(reason)

    def close_connection(self) -> None:
        """Close the connection, for good.

        ``loseConnection`` flushes what is queued; over TLS it then sends close_notify
        and waits for the peer's, which a client that neither answers nor closes its
        socket never sends: the session (and its per-IP slot) would live on.  So the
        transport is aborted if it is still there after ``limits.close_grace``.
        """
        self._closing = True
        if self.transport is None:
            return
        self._release()
        # Twisted keeps a connection with a registered producer open after loseConnection
        with contextlib.suppress(Exception):
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._abort_timer is None:
            self._abort_timer = _reactor().callLater(self.limits.close_grace, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if self.transport is not None:
            log.info("event=imap.close_forced session=%s peer=%s", self.session, self.peer)
            self.transport.abortConnection()

    # -- a client that stops reading ---------------------------------------------------

    def _output_paused(self) -> None:
        self._cancel_stall_timer()
        self._stall_timer = _reactor().callLater(self.limits.output_stall_timeout,
                                                 self._drop_slow_reader, "stalled")

    def _output_resumed(self) -> None:
        self._cancel_stall_timer()
        if self.transport is None or self._closing:
            return
        _reactor().callLater(0, self._after_resume)

    def _after_resume(self) -> None:
        if self.transport is None or self._closing or self._gate.paused:
            return
        if self._changes_waiting:
            self._changes_waiting = False
            self.folder_changed()
        if self.notify is not None:
            self.notify.kick()
        self._pump()  # commands that waited for the output to drain

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None and self._stall_timer.active():
            self._stall_timer.cancel()
        self._stall_timer = None

    def output_paused(self) -> bool:
        """The client is not reading what was sent: write nothing that can wait."""
        return self._gate.paused

    def _drop_slow_reader(self, why: str) -> None:
        """Abort the connection: nothing more can reach the client, what is queued goes."""
        self._stall_timer = None
        if self.transport is None or (self._closing and self._abort_timer is None):
            return
        log.warning("event=imap.slow_reader session=%s peer=%s reason=%s backlog=%d",
                    self.session, self.peer, why, self._gate.backlog)
        self._closing = True
        self._gate.stopProducing()
        self.transport.abortConnection()

    def timeoutConnection(self) -> None:
        self._untagged(b"* BYE Autologout; idle for too long.")
        self.close_connection()

    def sendServerGreeting(self) -> None:
        self._write(b"* OK [CAPABILITY " + b" ".join(self.listCapabilities()) + b"] "
                    + self.IDENT)

    # -- capabilities ----------------------------------------------------------

    def _tls_active(self) -> bool:
        if self.implicit_tls or self.startedTLS:
            return True
        return interfaces.ISSLTransport(self.transport, None) is not None

    def _auth_allowed(self) -> bool:
        return self._tls_active() or self.limits.allow_plaintext_auth

    def capabilities(self) -> dict[bytes, Any]:
        cap: dict[bytes, Any] = {b"IMAP4rev2": None}  # beside Twisted's IMAP4rev1
        if self.principal is None:
            if not self._tls_active() and self.ctx is not None and self.canStartTLS:
                cap[b"STARTTLS"] = None
            if self._auth_allowed():
                cap[b"AUTH"] = [b"PLAIN", b"LOGIN"]
                cap[b"SASL-IR"] = None
            else:
                cap[b"LOGINDISABLED"] = None
        else:
            for c in (b"IDLE", b"NAMESPACE", b"UIDPLUS", b"MOVE", b"UNSELECT",
                      b"SPECIAL-USE", b"CHILDREN", b"QUOTA", b"ENABLE", b"CONDSTORE",
                      b"QRESYNC", b"ESEARCH", b"SEARCHRES", b"SORT", b"LIST-EXTENDED",
                      b"LIST-STATUS",
                      b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES", b"MULTIAPPEND", b"SORT=DISPLAY",
                      b"BINARY", b"STATUS=SIZE", b"COMPRESS=DEFLATE",
                      b"NOTIFY", b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"CATENATE",
                      b"UNAUTHENTICATE"):
                cap[c] = None
        cap[b"ID"] = None
        # RFC 7888: LITERAL+ once logged in; before, LITERAL- caps what a stranger sends
        cap[b"LITERAL+" if self.principal is not None else b"LITERAL-"] = None
        return cap

    # -- output ------------------------------------------------------------------

    def _write(self, line: bytes) -> None:
        if self.transport is not None:
            self._count(len(line) + 2)
            if line[:1] == b"+":  # a continuation: the client waits for it, and so does the command
                self._release()
            self._out(line + b"\r\n")

    def _out(self, data: bytes) -> None:
        """Write, or hold while a command runs: its untagged lines, the changes reported
        after a thread hop and the tagged reply then leave in one transport write, so one
        TLS record and one send() instead of one per turn of the loop the command spanned
        (issue 20: the TLS layer's per-record cost showed in the stress profile).  Held
        output is released at the command's end (_finish), past _HOLD_MAX, at a
        continuation request ("+ ...": IDLE, AUTHENTICATE) and before the transport changes
        or closes (STARTTLS, COMPRESS, close_connection)."""
        held = self._held
        if held is None:
            if self.transport is not None:
                self.transport.write(data)
            return
        held.append(data)
        self._held_size += len(data)
        if self._held_size >= _HOLD_MAX:
            self._release(keep_holding=True)

    def _release(self, *, keep_holding: bool = False) -> None:
        held = self._held
        self._held = [] if keep_holding and held is not None else None
        self._held_size = 0
        if held and self.transport is not None:
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def _count(self, size: int) -> None:
        """Bound what is written while the client does not read (drop it past the cap)."""
        gate = self._gate
        if gate.paused:
            gate.backlog += size
            if gate.backlog > self.limits.max_output_backlog:
                self._drop_slow_reader("backlog")

    async def _send(self, parts: list[bytes]) -> bool:
        """Write one response made of ``parts``, big ones in pieces as the client reads them.

        False when the connection went away meanwhile.
        """
        for part in parts:
            for start in range(0, max(len(part), 1), _SEND_PIECE):
                if self.transport is None or self._closing:
                    return False
                piece = part if len(part) <= _SEND_PIECE else part[start:start + _SEND_PIECE]
                self._count(len(piece))
                self._out(piece)
                if self._gate.paused:
                    await self._gate.wait()
        return self.transport is not None and not self._closing

    def _untagged(self, line: bytes) -> None:
        self._write(line)

    def _tagged(self, tag: bytes, reply: replies.Reply) -> None:
        self._write(reply.render(tag))

    async def _ok(self, tag: bytes, text: bytes, code: bytes | None = None, *,
                  allow_expunge: bool = True) -> None:
        """Report pending mailbox changes, then the tagged OK."""
        await self._report_changes(allow_expunge=allow_expunge, along=True)
        self._tagged(tag, replies.Reply(b"OK", code, text))

    async def _report_changes(self, *, allow_expunge: bool, along: bool = False) -> None:
        """``along``: at the end of a command, from the look its own pool call took
        (SelectedFolder.refresh); the view forgets it when the command ends."""
        if self.selected is None:
            return
        try:
            lines = await self.selected.refresh(allow_expunge=allow_expunge, along=along)
        except errors.NoSuchFolder:
            # deleted under us (another session): RFC 3501 leaves this open
            self._untagged(b"* BYE [UNAVAILABLE] Selected mailbox was deleted.")
            self.close_connection()
            self.selected = None
            return
        except UidValidityChanged:
            # the uidlist was rebuilt (esam store check --repair): our UIDs are void
            self._untagged(b"* BYE [UNAVAILABLE] Mailbox UIDVALIDITY changed; reconnect.")
            self.close_connection()
            self.selected = None
            return
        if self.transport is None:
            return
        await self._untagged_many(lines)
        if self._contexts and self.selected is not None:  # RFC 5267 ADDTO/REMOVEFROM
            await self._untagged_many(await self._contexts.update(self.selected))

    # -- framing -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self._zin is not None:
            self._zin.feed(data)  # expanded by _pump only as far as there is room
        else:
            self._buf += data
        self._pump()

    def rawDataReceived(self, data: bytes) -> None:
        self.dataReceived(data)

    def _pump(self) -> None:
        self._pump_buffer()
        # COMPRESS (RFC 4978): expand only as much as the framing has room for, then frame it
        while self._zin is not None and not self._closing:
            try:
                more = self._zin.take(self.limits.max_line * 2 - len(self._buf))
            except zlib.error:
                self._write(b"* BYE [PARSE] Corrupt compressed data.")
                self.close_connection()
                return
            if not more:
                break
            self._buf += more
            self._pump_buffer()

    def _pump_buffer(self) -> None:
        while not self._closing:
            if self._lit_need >= 0:
                if not self._buf and self._lit_need:
                    break
                take = min(self._lit_need, len(self._buf))
                spool = self._lit_spool
                if self._lit_discard:
                    pass
                elif spool is not None:
                    spool.feed(bytes(self._buf[:take]))
                else:
                    self._lit_buf += self._buf[:take]
                del self._buf[:take]
                self._lit_need -= take
                if self._lit_need:
                    break
                if self._lit_discard:
                    self._lits.append(b"")
                    self._lit_discard = False
                elif spool is not None:
                    self._lits.append(SpooledString(spool))
                    self._lit_spool = None
                else:
                    self._lits.append(bytes(self._lit_buf))
                self._lit_buf = bytearray()
                self._lit_need = -1
                continue
            if (self._busy or self._gate.paused) and self._line_hook is None:
                break  # one command at a time; none while the client is not reading
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.limits.max_line:
                    self._too_long()
                break
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.limits.max_line:
                self._too_long()
                break
            if self._line_hook is not None and not self._lines:
                self._line_hook(line)
                continue
            self._frame_line(line)
        self._flow_control()

    def _flow_control(self) -> None:
        high = self.limits.max_line * 2
        if self.transport is None:
            return
        spool = self._lit_spool
        if spool is not None and spool.backlog() > SPOOL_BACKLOG:
            # the disk is slower than the client: stop reading until the writes drain
            writes = spool.idle()
            if writes is not None:
                if not self._transport_paused:
                    self._transport_paused = True
                    self.transport.pauseProducing()
                writes.add_done_callback(lambda _: self._pump())
                return
        buffered = len(self._buf) + (self._zin.backlog if self._zin is not None else 0)
        if buffered > high and not self._transport_paused:
            self._transport_paused = True
            self.transport.pauseProducing()
        elif buffered <= high and self._transport_paused:
            self._transport_paused = False
            self.transport.resumeProducing()

    def _too_long(self) -> None:
        self._write(b"* BYE [TOOBIG] Command line too long.")
        self.close_connection()

    def _frame_line(self, line: bytes) -> None:
        self._lines.append(line)
        lit = literal_at_end(line)
        if self._toobig_tag is not None and (lit is None or not lit[1]):
            # the end of a command whose oversized LITERAL+ octets were dropped (or a
            # synchronizing literal in it: the client waits for "+", which never comes)
            tag, self._toobig_tag = self._toobig_tag, None
            self._lines, self._lits, self._cmd_literal_bytes = [], [], 0
            self._drop_spools()
            self._tagged(tag, replies.TOOBIG)
            return
        if lit is None:
            lines, lits = self._lines, self._lits
            self._lines, self._lits, self._cmd_literal_bytes = [], [], 0
            self._execute(lines, lits)
            if not self._busy:
                self._drop_spools()  # answered without running (BAD, wrong state)
            return
        size, nonsync = lit
        first = self._lines[0].split(b" ", 3)
        tag = first[0] if first and _TAG_RE.match(first[0]) else b"*"
        verb = first[1].upper() if len(first) > 1 else b""
        is_append = verb == b"APPEND"
        self._cmd_literal_bytes += size
        cap = self.limits.max_message_size if is_append else self.limits.max_command_literals
        over = (size > cap or (not is_append and self._cmd_literal_bytes > cap)
                or (is_append and (len(self._lits) >= self.limits.max_multiappend
                                   or self._cmd_literal_bytes > 4 * cap)))
        if nonsync and self.principal is not None and (over or self._toobig_tag is not None):
            # LITERAL+ (RFC 7888): the octets are already coming.  Read and drop them,
            # then answer the command NO [TOOBIG]: the connection stays in sync.
            self._toobig_tag = tag
            self._lit_need = size
            self._lit_discard = True
            return
        if nonsync and self.principal is None and size > min(self.limits.nonsync_literal_max, cap):
            # Before login only LITERAL- (4096 octets) is offered: no stranger makes us
            # read megabytes.  The client is already sending: we cannot resync.
            self._tagged(tag, replies.TOOBIG_NONSYNC)
            self._write(b"* BYE [TOOBIG] Literal too large.")
            self.close_connection()
            return
        if over:
            self._lines, self._lits, self._cmd_literal_bytes = [], [], 0
            self._drop_spools()
            self._tagged(tag, replies.TOOBIG)  # before any "+": the client sends nothing
            return
        if is_append and self.user is None and not nonsync:
            # never take a big literal from a client that may not APPEND at all
            self._lines, self._lits, self._cmd_literal_bytes = [], [], 0
            self._tagged(tag, replies.Reply(b"BAD", None, b"Command not valid in this state."))
            return
        if not nonsync:
            self._write(b"+ Ready for literal data")
        self._lit_need = size
        self._lit_buf = bytearray()
        if is_append and self.user is not None and size > self.limits.spool_threshold:
            self._lit_spool = self.user.spool(size)
            self._spools.append(self._lit_spool)

    # -- dispatch ----------------------------------------------------------------

    _COMMANDS: dict[bytes, tuple[str, frozenset[str]]] = {}

    def _execute(self, lines: list[bytes], lits: list[bytes]) -> None:
        if log.isEnabledFor(TRACE):  # transcript: command lines only, credentials redacted
            log.log(TRACE, "event=imap.command session=%s line=%r", self.session, redact(lines[0]))
        first = lines[0].split(b" ", 2)
        tag = first[0] if first and first[0] and _TAG_RE.match(first[0]) else b"*"
        if tag == b"*" or tag == b"+":
            self._write(b"* BAD Invalid tag.")
            return
        if sum(len(line) for line in lines) > _BIG_COMMAND:
            # A long command line (up to 64 KiB) is tokenized, and its sequence sets
            # parsed, in a worker thread: the loop keeps serving other clients.
            self._busy = True
            _background(self._execute_big(tag, lines, lits))
            return
        try:
            tokens = tokenize(lines, lits)
        except ParseError as exc:
            self._tagged(tag, replies.for_exception(exc, self.session))
            return
        self._dispatch(tag, tokens)

    async def _execute_big(self, tag: bytes, lines: list[bytes], lits: list[bytes]) -> None:
        try:
            tokens = await asyncio.to_thread(_tokenize_and_warm, lines, lits)
        except ParseError as exc:
            self._tagged(tag, replies.for_exception(exc, self.session))
            self._busy = False
            self._drop_spools()
            if self.transport is not None and not self._closing:
                _reactor().callLater(0, self._pump)
            return
        self._busy = False
        if self.transport is None:
            return
        self._dispatch(tag, tokens)
        if not self._busy:
            self._drop_spools()
            if not self._closing:
                _reactor().callLater(0, self._pump)

    def _dispatch(self, tag: bytes, tokens: list[Token]) -> None:
        if len(tokens) < 2 or not isinstance(tokens[1], Atom):
            self._tagged(tag, replies.Reply(b"BAD", None, b"Missing command."))
            return
        verb = bytes(tokens[1]).upper()
        rest = tokens[2:]
        uid = False
        if verb == b"UID":
            if not rest or not isinstance(rest[0], Atom):
                self._tagged(tag, replies.Reply(b"BAD", None, b"Missing UID command."))
                return
            verb = b"UID " + bytes(rest[0]).upper()
            rest = rest[1:]
            uid = True
        entry = self._COMMANDS.get(verb)
        if entry is None:
            self._tagged(tag, replies.Reply(b"BAD", None, b"Unknown command."))
            return
        method_name, states = entry
        if self.state not in states:
            self._tagged(tag, replies.Reply(b"BAD", None, b"Command not valid in this state."))
            return
        method = getattr(self, method_name)
        self._busy = True
        self._held = []
        if self.selected is not None:
            self.selected.view.forget_along()  # an earlier command's look never serves this one
        self._cmd_timer = imap_metrics.start(verb)
        try:
            result = method(tag, Args(rest), True) if uid else method(tag, Args(rest))
        except Exception as exc:  # noqa: BLE001 - the boundary: map, never leak text
            self._fail(tag, exc, verb)
            self._finish()
            return
        if asyncio.iscoroutine(result):
            # a plain done-callback: Deferred.fromFuture cost a Deferred, its callback chain
            # and an adapter per command (measured under the random-command stress, issue 20)
            task = asyncio.ensure_future(result)
            task.add_done_callback(functools.partial(self._command_done, tag, verb))
        elif isinstance(result, defer.Deferred):
            result.addErrback(self._fail_failure, tag, verb)
            result.addBoth(self._finish_cb)
        else:
            self._finish()

    def _drop_spools(self) -> None:
        """Remove the spool files of the finished (or aborted) command."""
        spools, self._spools = self._spools, []
        self._lit_spool = None
        for spool in spools:
            _background(spool.discard())

    def _command_done(self, tag: bytes, verb: bytes, task: asyncio.Future[Any]) -> None:
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if exc is not None:
            self._fail(tag, exc, verb)
        self._finish()

    def _fail_failure(self, failure: Any, tag: bytes, verb: bytes) -> None:
        self._fail(tag, failure.value, verb, failure)

    def _finish_cb(self, _: object) -> None:
        self._finish()

    def _finish(self) -> None:
        imap_metrics.finished(self)
        self._busy = False
        if self.selected is not None:
            self.selected.view.forget_along()
        self._release()
        self._drop_spools()
        if self.notify is not None:
            self.notify.kick()  # NOTIFY (RFC 5465): what waited for the command to end
        if self.transport is not None and not self._closing:
            # continue with pipelined commands on the next turn (no deep recursion)
            _soon(self._pump)

    def _fail(self, tag: bytes, exc: BaseException, verb: bytes, failure: Any = None,
              *, trycreate: bool = False) -> None:
        if isinstance(exc, _Done):
            return
        reply = replies.for_exception(exc, self.session, trycreate=trycreate)
        if reply.code == b"SERVERBUG":
            exc_info = (type(exc), exc, exc.__traceback__)
            if failure is not None:
                exc_info = (failure.type, failure.value, failure.getTracebackObject())
            log.error("event=imap.server_bug session=%s command=%s", self.session,
                      verb.decode("ascii", "replace"), exc_info=exc_info)
        self._tagged(tag, reply)

    # -- any state ---------------------------------------------------------------

    async def cmd_capability(self, tag: bytes, args: Args) -> None:
        args.end()
        self._untagged(b"* CAPABILITY " + b" ".join(self.listCapabilities()))
        await self._ok(tag, b"CAPABILITY completed.")

    async def cmd_noop(self, tag: bytes, args: Args) -> None:
        args.end()
        await self._ok(tag, b"NOOP completed.")

    def cmd_logout(self, tag: bytes, args: Args) -> None:
        args.end()
        self._untagged(b"* BYE Logging out.")
        self._tagged(tag, replies.Reply(b"OK", None, b"LOGOUT completed."))
        self.state = "logout"
        self.close_connection()

    def cmd_unauthenticate(self, tag: bytes, args: Args) -> None:
        """RFC 8437: back to the not-authenticated state.  The selected mailbox is left
        without expunging, NOTIFY stops, what ENABLE turned on is off again; TLS and
        COMPRESS belong to the connection and stay."""
        args.end()
        self._stop_idle_poll()
        self._deselect()
        if self.notify is not None:
            self.notify.active = False
            self.notify = None
        self.condstore = self.qresync = self.rev2 = False
        login = self.principal.login if self.principal is not None else "-"
        self.principal = None
        self.user = None
        self.state = "unauth"
        self.setTimeout(int(self.limits.unauth_timeout))
        log.info("event=imap.unauthenticate session=%s peer=%s user=%s",
                 self.session, self.peer, login)
        self._tagged(tag, replies.Reply(
            b"OK", b"CAPABILITY " + b" ".join(self.listCapabilities()),
            b"UNAUTHENTICATE completed."))

    async def cmd_id(self, tag: bytes, args: Args) -> None:
        tok = args.next()
        if not (isinstance(tok, list) or (isinstance(tok, Atom) and tok.upper() == b"NIL")):
            raise ParseError("ID expects a list or NIL")
        args.end()
        self._untagged(b'* ID ("name" "esam_mail" "version" ' + quote(_version.encode()) + b")")
        await self._ok(tag, b"ID completed.")

    async def cmd_notify(self, tag: bytes, args: Args) -> None:
        """RFC 5465 NOTIFY SET [STATUS] (filter events) ... / NOTIFY NONE (see .notify)."""
        try:
            spec = notifymod.parse(args, _normalise_name)
        except notifymod.BadEvent:
            self._tagged(tag, replies.Reply(b"NO", notifymod.badevent_code(),
                                            b"Event not supported."))
            return
        if spec is None:
            if self.notify is not None:
                self.notify.active = False
            self.notify = None
            await self._ok(tag, b"NOTIFY completed.")
            return
        subscribed: set[str] = set()
        if any(g.kind == "SUBSCRIBED" for g in spec.others):
            subscribed = await self._user().subscriptions()
        state = notifymod.NotifyState(self, spec, subscribed)
        if self.notify is not None:
            self.notify.active = False
        self.notify = state
        if spec.status:
            await state.initial_status()
        await self._ok(tag, b"NOTIFY completed.")

    def cmd_compress(self, tag: bytes, args: Args) -> None:
        """RFC 4978: from the end of the OK on, both directions are raw deflate."""
        mechanism = args.atom().upper()
        args.end()
        if mechanism != b"DEFLATE":
            self._tagged(tag, replies.Reply(b"BAD", None, b"Unknown compression mechanism."))
            return
        if self._zin is not None:
            self._tagged(tag, replies.Reply(b"NO", b"COMPRESSIONACTIVE",
                                            b"DEFLATE is already active."))
            return
        self._tagged(tag, replies.Reply(b"OK", None, b"DEFLATE active."))
        self._release()  # the OK is the last thing sent uncompressed
        self.transport = DeflateTransport(self.transport, _reactor().callLater)
        self._zin = Inflater()
        self._zin.feed(bytes(self._buf))  # whatever the client sent after it is compressed
        self._buf.clear()
        log.info("event=imap.compress session=%s", self.session)

    # -- not authenticated -------------------------------------------------------

    def cmd_starttls(self, tag: bytes, args: Args) -> None:
        args.end()
        if self._tls_active() or self.ctx is None or not self.canStartTLS:
            self._tagged(tag, replies.Reply(b"BAD", None, b"TLS not available."))
            return
        self._tagged(tag, replies.Reply(b"OK", None, b"Begin TLS negotiation now."))
        self._release()  # the OK is the last thing sent in clear
        # RFC 3207-style injection defence: drop anything pipelined after STARTTLS
        self._buf.clear()
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    def cmd_login(self, tag: bytes, args: Args) -> Coroutine[Any, Any, None] | None:
        user = args.astring()
        password = args.astring()
        args.end()
        if not self._auth_allowed():
            self._tagged(tag, replies.LOGIN_DISABLED)
            return None
        return self._authenticate(tag, user, password, b"LOGIN")

    def cmd_authenticate(self, tag: bytes, args: Args) -> defer.Deferred[None] | None:
        mech = args.atom().upper()
        initial = args.astring() if args.more() else None
        args.end()
        if not self._auth_allowed():
            self._tagged(tag, replies.LOGIN_DISABLED)
            return None
        if mech not in (b"PLAIN", b"LOGIN"):
            self._tagged(tag, replies.Reply(b"NO", b"CANNOT", b"Unsupported mechanism."))
            return None
        done: defer.Deferred[None] = defer.Deferred()
        responses: list[bytes] = []
        prompts = [b""] if mech == b"PLAIN" else [b"Username:", b"Password:"]

        def decode(raw: bytes) -> bytes | None:
            if raw == b"=":
                return b""
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                return None

        def finish() -> None:
            self._line_hook = None
            if mech == b"PLAIN":
                parts = responses[0].split(b"\0")
                if len(parts) != 3 or (parts[0] and parts[0] != parts[1]):
                    self._auth_failed(tag, b"AUTHENTICATE")
                    done.callback(None)
                    return
                user, password = parts[1], parts[2]
            else:
                user, password = responses[0], responses[1]
            defer.Deferred.fromFuture(asyncio.ensure_future(
                self._authenticate(tag, user, password, b"AUTHENTICATE"))).chainDeferred(done)

        def on_line(line: bytes) -> None:
            if line.strip() == b"*":
                self._line_hook = None
                self._tagged(tag, replies.Reply(b"BAD", None, b"Authentication cancelled."))
                done.callback(None)
                return
            value = decode(line.strip())
            if value is None:
                self._line_hook = None
                self._tagged(tag, replies.Reply(b"BAD", None, b"Invalid base64."))
                done.callback(None)
                return
            responses.append(value)
            if len(responses) < len(prompts):
                self._write(b"+ " + base64.b64encode(prompts[len(responses)]))
            else:
                finish()

        if initial is not None:
            value = decode(initial)
            if value is None:
                self._tagged(tag, replies.Reply(b"BAD", None, b"Invalid base64."))
                return None
            responses.append(value)
            if len(responses) == len(prompts):
                finish()
                return done
        self._line_hook = on_line
        self._write(b"+ " + base64.b64encode(prompts[len(responses)]))
        return done

    async def _authenticate(self, tag: bytes, user: bytes, password: bytes, how: bytes) -> None:
        """LOGIN/AUTHENTICATE's check and answer.  A coroutine the dispatcher awaits through
        its done-callback (a Deferred adapter and its callback chain per login was a
        visible cost in the session profile, issue 20); errors other than a refused login
        reach the dispatcher's mapping (SERVERBUG), as before."""
        username = user.decode("utf-8", "replace")
        secret = password.decode("utf-8", "replace")
        try:
            principal = await self.factory.authenticator.authenticate(
                username, secret, peer=self.peer, service="imap"
            )
        except errors.AccountDisabled as exc:
            state = exc.state
            log.info("event=imap.login result=disabled session=%s peer=%s state=%s", self.session, self.peer,
                     state)
            self._tagged(tag, replies.ACCOUNT_DISABLED.get(state, replies.ACCOUNT_DISABLED["suspended"]))
            return
        except errors.AuthError:
            self._auth_failed(tag, how)
            return
        self.principal = principal
        self.user = self.factory.mailboxes.user(principal.login, principal.quota)
        self.state = "auth"
        self.setTimeout(int(self.limits.auth_timeout))
        log.info("event=imap.login result=ok session=%s peer=%s user=%s method=%s",
                 self.session, self.peer, principal.login, how.decode())
        self._tagged(tag, replies.Reply(
            b"OK", b"CAPABILITY " + b" ".join(self.listCapabilities()),
            how + b" completed."))

    def _auth_failed(self, tag: bytes, how: bytes) -> None:
        self._auth_failures += 1
        log.info("event=imap.login result=failed session=%s peer=%s method=%s",
                 self.session, self.peer, how.decode())
        self._tagged(tag, replies.AUTH_FAILED)
        if self._auth_failures >= self.limits.max_auth_failures:
            self._write(b"* BYE Too many authentication failures.")
            self.close_connection()

    # -- authenticated: mailboxes -----------------------------------------------

    def _decode_name(self, raw: bytes) -> str:
        """A mailbox name (or LIST pattern) from the client: UTF-8 once IMAP4rev2 is
        enabled (RFC 9051 §5.1), modified UTF-7 otherwise."""
        if not self.rev2:
            return decode_mailbox(raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MailboxNameError("mailbox name is not UTF-8") from exc

    def _mbox(self, name: str) -> bytes:
        """A mailbox name in a response: a quoted string, in UTF-8 under IMAP4rev2
        (RFC 9051 quoted strings may hold UTF-8), else in modified UTF-7."""
        if not self.rev2:
            return quote(encode_mailbox(name))
        raw = name.encode("utf-8")
        if any(b < 0x20 or b == 0x7F for b in raw):
            return quote(raw)  # a literal
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'

    def _mailbox_arg(self, args: Args) -> str:
        name = self._decode_name(args.astring())
        return _normalise_name(name)

    def _user(self) -> UserMailboxes:
        assert self.user is not None
        return self.user

    async def cmd_select(self, tag: bytes, args: Args) -> None:
        await self._select(tag, args, readonly=False)

    async def cmd_examine(self, tag: bytes, args: Args) -> None:
        await self._select(tag, args, readonly=True)

    async def _select(self, tag: bytes, args: Args, *, readonly: bool) -> None:
        name = self._mailbox_arg(args)
        resync = None
        if args.more():  # select-params (RFC 4466): (CONDSTORE) or (QRESYNC (...))
            resync = self._select_params(args.plist())
        args.end()
        if self.selected is not None:  # RFC 7162 §3.2.11
            self._untagged(b"* OK [CLOSED] Previous mailbox closed.")
        self._deselect()
        view, snap, uidnext = await self._user().select(name, claim=not readonly and not self.rev2)
        sel = await SelectedFolder.from_snapshot(view, snap, readonly=readonly, rev2=self.rev2)
        for line in sel.flags_lines():
            self._untagged(line)
        self._untagged(b"* %d EXISTS" % sel.exists)
        if self.rev2:  # RFC 9051 §6.3.2: LIST instead of RECENT and [UNSEEN]
            self._untagged(await self._select_list_line(name))
        else:
            self._untagged(b"* %d RECENT" % len(sel.recent))
            unseen = sel.unseen_at_open
            if unseen is not None:
                self._untagged(b"* OK [UNSEEN %d] First unseen." % unseen)
        self._untagged(b"* OK [UIDVALIDITY %d] UIDs valid." % sel.uidvalidity)
        self._untagged(b"* OK [UIDNEXT %d] Predicted next UID." % uidnext)
        self._untagged(b"* OK [HIGHESTMODSEQ %d] Highest." % sel.highestmodseq)
        sel.condstore = self.condstore
        sel.qresync = self.qresync
        if resync is not None and resync[0] == sel.uidvalidity:
            await self._resync(sel, resync[1], resync[2])
        self.selected = sel
        self.state = "select"
        mode = b"READ-ONLY" if readonly else b"READ-WRITE"
        verb = b"EXAMINE" if readonly else b"SELECT"
        self._tagged(tag, replies.Reply(b"OK", mode, verb + b" completed."))

    async def _select_list_line(self, name: str) -> bytes:
        """RFC 9051 §6.3.2: the selected mailbox's LIST line; its attributes are
        accurate, only the special use is given."""
        info = next((f for f in await self._user().list_folders() if f.name == name), None)
        special = (info.special_use if info is not None else None) or SPECIAL_USE.get(name)
        return (b"* LIST (" + (special or "").encode() + b') "/" ' + self._mbox(name))

    def _deselect(self) -> None:
        self.selected = None
        self.saved = []
        self._contexts.clear()  # RFC 5267: contexts live as long as the selection
        if self.state == "select":
            self.state = "auth"

    async def cmd_create(self, tag: bytes, args: Args) -> None:
        name = self._mailbox_arg_create(args)
        args.end()
        if name.upper() == "INBOX":
            self._tagged(tag, replies.Reply(b"NO", b"ALREADYEXISTS", b"INBOX exists."))
            return
        await self._user().create_folder(name)
        await self._ok(tag, b"CREATE completed.")

    def _mailbox_arg_create(self, args: Args) -> str:
        raw = args.astring()
        if raw.endswith(b"/") and len(raw) > 1:
            raw = raw[:-1]  # RFC 3501 §6.3.3: trailing delimiter
        return _normalise_name(self._decode_name(raw))

    async def cmd_delete(self, tag: bytes, args: Args) -> None:
        name = self._mailbox_arg(args)
        args.end()
        if name == "INBOX":
            self._tagged(tag, replies.Reply(b"NO", b"CANNOT", b"INBOX cannot be deleted."))
            return
        if self.selected is not None and self.selected.name == name:
            self._deselect()
        await self._user().delete_folder(name)
        await self._ok(tag, b"DELETE completed.")

    async def cmd_rename(self, tag: bytes, args: Args) -> None:
        old = self._mailbox_arg(args)
        new = self._mailbox_arg_create(args)
        args.end()
        if new == "INBOX":
            self._tagged(tag, replies.Reply(b"NO", b"ALREADYEXISTS", b"INBOX exists."))
            return
        await self._user().rename_folder(old, new)
        await self._ok(tag, b"RENAME completed.")

    async def cmd_subscribe(self, tag: bytes, args: Args) -> None:
        name = self._mailbox_arg(args)
        args.end()
        await self._user().subscribe(name, True)
        await self._ok(tag, b"SUBSCRIBE completed.")

    async def cmd_unsubscribe(self, tag: bytes, args: Args) -> None:
        name = self._mailbox_arg(args)
        args.end()
        await self._user().subscribe(name, False)
        await self._ok(tag, b"UNSUBSCRIBE completed.")

    async def cmd_list(self, tag: bytes, args: Args) -> None:
        await self._list(tag, args, lsub=False)

    async def cmd_lsub(self, tag: bytes, args: Args) -> None:
        await self._list(tag, args, lsub=True)

    async def _list(self, tag: bytes, args: Args, *, lsub: bool) -> None:
        """LIST (RFC 3501, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819) and LSUB."""
        select_opts: set[bytes] = set()
        if not lsub and isinstance(args.peek(), list):
            select_opts = {bytes(x).upper() for x in args.plist() if isinstance(x, Atom)}
            # RFC 5258 §3: RECURSIVEMATCH alone (or only with REMOTE) is BAD
            if select_opts - _LIST_SELECT or select_opts - {b"REMOTE"} == {b"RECURSIVEMATCH"}:
                raise ParseError("bad LIST selection option")
        ref = self._decode_name(args.astring())
        pat_tok = args.next()
        if isinstance(pat_tok, list):
            if lsub or not pat_tok or any(isinstance(p, list) for p in pat_tok):
                raise ParseError("bad mailbox patterns")
            patterns = [self._decode_name(bytes(p)) for p in pat_tok]
        else:
            patterns = [self._decode_name(bytes(pat_tok))]
        return_opts: set[bytes] = set()
        status_items: list[bytes] = []
        if args.more():
            kw = args.atom().upper()
            if kw != b"RETURN" or lsub:
                raise ParseError("RETURN expected")
            opts = args.plist()
            k = 0
            while k < len(opts):
                opt = opts[k]
                word = bytes(opt).upper() if isinstance(opt, Atom) else b""
                if word == b"STATUS" and k + 1 < len(opts) and isinstance(opts[k + 1], list):
                    status_items = [bytes(x).upper() for x in opts[k + 1]
                                    if isinstance(x, Atom)]
                    if not status_items or any(x not in _STATUS_ITEMS for x in status_items):
                        raise ParseError("bad STATUS item")
                    k += 2
                    continue
                if word not in _LIST_RETURN:
                    raise ParseError("bad LIST return option")
                return_opts.add(word)
                k += 1
        args.end()
        verb = b"LSUB" if lsub else b"LIST"
        if patterns == [""]:
            self._untagged(b'* %s (\\Noselect) "/" ""' % verb)
            await self._ok(tag, verb + b" completed.")
            return
        rxs = []
        for pattern in patterns:
            if ref and not ref.endswith("/") and not pattern.startswith("/"):
                rxs.append(_pattern_regex(ref + "/" + pattern))
            else:
                rxs.append(_pattern_regex(ref + pattern))
        folders = {f.name: f for f in await self._user().list_folders()}
        if lsub:
            await self._lsub(tag, rxs[0], folders)
            return
        subs: set[str] = set()
        if b"SUBSCRIBED" in select_opts | return_opts:
            subs = await self._user().subscriptions()
            subs |= {n for n, f in folders.items() if f.subscribed}
        existing = {n for n, f in folders.items() if not f.noselect}
        names = set(folders) | {p for n in existing for p in _parents(n)}
        if b"SUBSCRIBED" in select_opts:
            names |= subs
        recursive = b"RECURSIVEMATCH" in select_opts
        if recursive:
            names |= {p for n in subs for p in _parents(n)}
        out: list[tuple[str, bytes]] = []
        for name in sorted(names, key=lambda n: (n != "INBOX", n)):
            if not any(rx.match(name) for rx in rxs):
                continue
            info = folders.get(name)
            sub_kids = recursive and any(s.startswith(name + "/") for s in subs)
            if b"SUBSCRIBED" in select_opts and name not in subs and not sub_kids:
                continue
            attrs: list[str] = []
            selectable = name in existing
            if name not in existing and name not in folders and not any(
                    o.startswith(name + "/") for o in existing):
                attrs.append("\\NonExistent")
            elif not selectable:
                attrs.append("\\Noselect")
            if "\\NonExistent" not in attrs:
                has_children = any(o.startswith(name + "/") for o in existing | set(folders))
                attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
            special = info.special_use if info is not None else None
            if special is None and selectable:
                special = SPECIAL_USE.get(name)
            if b"SPECIAL-USE" in select_opts and special is None:
                continue
            if special:
                attrs.append(special)
            if name in subs:
                attrs.append("\\Subscribed")
            line = (b"* LIST (" + " ".join(attrs).encode() + b') "/" '
                    + self._mbox(name))
            if sub_kids:
                line += b' ("CHILDINFO" ("SUBSCRIBED"))'
            out.append((name if selectable and status_items else "", line))
        for name, line in out:
            self._untagged(line)
            if name:  # RFC 5819: the STATUS right after its LIST line
                with contextlib.suppress(errors.NoSuchFolder):
                    st = await self._user().status(name)
                    self._untagged(b"* STATUS " + self._mbox(name) + b" ("
                                   + _status_body(st, status_items) + b")")
        await self._ok(tag, verb + b" completed.")

    async def _lsub(self, tag: bytes, rx: re.Pattern[str], folders: dict[str, FolderInfo]) -> None:
        """RFC 3501 §6.3.9: the subscribed names matching the pattern (whether or not
        they exist), plus, as ``\\Noselect``, an unsubscribed parent that the pattern
        matches when a subscribed child of it is cut off by ``%``."""
        subs = await self._user().subscriptions()
        subs |= {n for n, f in folders.items() if f.subscribed}
        names = set(folders) | subs
        out: dict[str, list[str]] = {}
        for name in subs:
            if rx.match(name):
                info = folders.get(name)
                out[name] = ["\\Noselect"] if info is None or info.noselect else []
                continue
            parts = name.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in subs and parent not in out and rx.match(parent):
                    out[parent] = ["\\Noselect"]
        for name in sorted(out, key=lambda n: (n != "INBOX", n)):
            attrs = out[name]
            has_children = any(o.startswith(name + "/") for o in names)
            attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
            self._untagged(b"* LSUB (" + " ".join(attrs).encode() + b') "/" '
                           + self._mbox(name))
        await self._ok(tag, b"LSUB completed.")

    async def cmd_status(self, tag: bytes, args: Args) -> None:
        name = self._mailbox_arg(args)
        items = [bytes(x).upper() for x in args.plist() if isinstance(x, Atom)]
        args.end()
        if not items or any(i not in _STATUS_ITEMS for i in items):
            raise ParseError("bad STATUS item")
        if b"HIGHESTMODSEQ" in items:
            self._enable_condstore()
        st = await self._user().status(name)
        self._untagged(b"* STATUS " + self._mbox(name) + b" ("
                       + _status_body(st, items) + b")")
        await self._ok(tag, b"STATUS completed.")

    async def cmd_append(self, tag: bytes, args: Args) -> None:
        """APPEND, with MULTIAPPEND (RFC 3502): several messages, all or none; a message
        may be built by CATENATE (RFC 4469, see :mod:`.catenate`)."""
        name = self._mailbox_arg(args)
        batch: list[tuple[list[str], dt.datetime | None, bytes | Spool | list[catmod.Part]]] = []
        while args.more() or not batch:
            flags: list[str] = []
            date: dt.datetime | None = None
            if isinstance(args.peek(), list):
                flags = _parse_flags(args.plist())
            tok = args.next()
            nxt = args.peek()
            if isinstance(tok, String) and (
                    (isinstance(nxt, String) and (_DATE_TIME.fullmatch(bytes(tok)) or len(tok) < 64))
                    or (_is_atom(nxt, b"CATENATE") and _DATE_TIME.fullmatch(bytes(tok)))):
                # a short string before the literal is the date-time (which the
                # tokenizer cannot tell from a literal): a malformed one is BAD
                date = parse_datetime(bytes(tok))
                tok = args.next()
            message: bytes | Spool | list[catmod.Part]
            if _is_atom(tok, b"CATENATE"):
                message = catmod.parse_parts(
                    args.plist(), lambda t: t.spool if isinstance(t, SpooledString) else None)
            elif isinstance(tok, SpooledString):
                message = tok.spool
            elif isinstance(tok, String):
                message = bytes(tok)
            else:
                raise ParseError("message literal expected")
            batch.append(([f for f in flags if f != "\\Recent"], date, message))
        ready: list[tuple[list[str], dt.datetime | None, bytes | Spool]] = []
        if any(isinstance(m, list) for *_, m in batch):
            try:  # a missing destination is TRYCREATE before any URL is looked at
                await self._user().check(name)
            except errors.NoSuchFolder:
                self._tagged(tag, replies.TRYCREATE)
                return
        try:
            for flags, date, message in batch:  # every URL resolved before anything is stored
                if isinstance(message, list):
                    message = await self._catenate(message)
                ready.append((flags, date, message))
        except catmod.BadUrl as exc:
            self._tagged(tag, replies.Reply(b"NO", exc.code(), b"CATENATE URL not usable."))
            return
        except catmod.TooBig:
            self._tagged(tag, replies.Reply(b"NO", b"TOOBIG", b"Message too large."))
            return
        if any((m.size if isinstance(m, Spool) else len(m)) == 0 for *_, m in ready):
            self._tagged(tag, replies.Reply(b"NO", None, b"Empty message."))
            return
        done: list[int] = []
        uidvalidity = 0
        try:
            for flags, date, message in ready:
                if isinstance(message, Spool):
                    await message.finish()
                uidvalidity, uid = await self._user().append(name, message, flags, date)
                done.append(uid)
        except Exception as exc:  # noqa: BLE001 - mapped like any command error
            if done:  # RFC 3502 §6.3.11: none of the messages stays
                await self._unappend(name, done)
            self._fail(tag, exc, b"APPEND", trycreate=True)
            return
        code = b"APPENDUID %d %s" % (uidvalidity, format_uid_set(done))
        await self._ok(tag, b"APPEND completed.", code)

    async def _catenate(self, parts: list[catmod.Part]) -> bytes | Spool:
        """One CATENATE message (RFC 4469), capped like an APPEND literal."""
        assert self.principal is not None
        users = {self.principal.login.lower(), self.principal.address.lower()}
        return await catmod.build(
            self._user(), parts, users=users, normalise=_normalise_name,
            limit=self.limits.max_message_size, spool_threshold=self.limits.spool_threshold,
            spools=self._spools)

    async def _unappend(self, name: str, uids: list[int]) -> None:
        """Take back the messages a failed MULTIAPPEND had already stored."""
        try:
            view = await self._user().open(name)
            await view.sync()
            await view.store_flags(uids, ["\\Deleted"], 1)
            await view.expunge(uids)
        except Exception:
            log.exception("event=imap.multiappend_rollback_failed session=%s", self.session)

    async def cmd_namespace(self, tag: bytes, args: Args) -> None:
        args.end()
        self._untagged(b'* NAMESPACE (("" "/")) NIL NIL')
        await self._ok(tag, b"NAMESPACE completed.")

    async def cmd_enable(self, tag: bytes, args: Args) -> None:
        if not args.more():
            raise ParseError("ENABLE needs a capability")
        enabled: list[bytes] = []
        for tok in args.rest():
            if not isinstance(tok, Atom):
                raise ParseError("capability atom expected")
            cap = tok.upper()
            if cap in (b"CONDSTORE", b"QRESYNC") and cap not in enabled:
                self._enable_condstore()  # QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)
                if cap == b"QRESYNC":
                    self.qresync = True
                    if self.selected is not None:
                        self.selected.qresync = True
                enabled.append(cap)
            elif cap == b"IMAP4REV2" and b"IMAP4rev2" not in enabled:
                self.rev2 = True  # no \Recent, ESEARCH, UTF-8 names (RFC 9051 App. E)
                if self.selected is not None:
                    self.selected.rev2 = True
                    self.selected.recent.clear()  # SEARCH RECENT/NEW agree with FETCH FLAGS
                enabled.append(b"IMAP4rev2")
        self._untagged(b"* ENABLED" + b"".join(b" " + c for c in enabled))
        await self._ok(tag, b"ENABLE completed.")

    def _select_params(self, params: list[Token]) -> tuple[int, int, SeqSet | None] | None:
        """Parse ``(CONDSTORE)`` or ``(QRESYNC (uidvalidity modseq [known-uids
        [seq-match-data]]))``; returns the QRESYNC arguments, if any."""
        if len(params) == 1 and isinstance(params[0], Atom) and params[0].upper() == b"CONDSTORE":
            self._enable_condstore(announce=False)  # the SELECT itself sends HIGHESTMODSEQ
            return None
        if (len(params) != 2 or not isinstance(params[0], Atom)
                or params[0].upper() != b"QRESYNC" or not isinstance(params[1], list)):
            raise ParseError("unknown SELECT parameter")
        if not self.qresync:
            raise ParseError("QRESYNC is not enabled")
        q = params[1]
        if not 2 <= len(q) <= 4:
            raise ParseError("QRESYNC needs uidvalidity and mod-sequence")
        uidvalidity = _number(q[0], "UIDVALIDITY", maximum=0xFFFFFFFF)
        modseq = _number(q[1], "mod-sequence", maximum=_MAX_MODSEQ)
        known = None
        if len(q) >= 3:
            if not isinstance(q[2], Atom):
                raise ParseError("known-uids expected")
            known = SeqSet.parse(bytes(q[2]))
        if len(q) == 4:  # seq-match-data: syntax checked; we keep expunge history instead
            pair = q[3]
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(x, Atom) for x in pair)):
                raise ParseError("bad seq-match-data")
            SeqSet.parse(bytes(pair[0]))
            SeqSet.parse(bytes(pair[1]))
        return uidvalidity, modseq, known

    async def _resync(self, sel: SelectedFolder, modseq: int, known: SeqSet | None) -> None:
        """RFC 7162 §3.2.5: what changed since ``modseq``: VANISHED (EARLIER), then FETCH."""
        top = sel.uids[-1] if sel.uids else 0
        gone = await sel.view.expunged_since(modseq)
        if known is not None:
            gone = [u for u in gone if known.contains(u, max(top, max(gone, default=0)))]
        if gone:
            self._untagged(b"* VANISHED (EARLIER) " + format_uid_set(gone))
        lines = []
        for u in sel.uids:
            if sel.modseq.get(u, 0) > modseq and (known is None or known.contains(u, top)):
                lines.append(sel.flags_fetch(u))
        await self._untagged_many(lines)

    def _enable_condstore(self, *, announce: bool = True) -> None:
        """RFC 7162 §3.1: from now on flag-change FETCH responses carry UID and MODSEQ.

        Enabled by a command in the selected state (FETCH MODSEQ, SEARCH MODSEQ, STORE
        UNCHANGEDSINCE, ENABLE...): the client has not seen the mailbox's HIGHESTMODSEQ
        yet, so it comes now as an untagged OK response code (RFC 7162 §3.1, §3.1.2.1)."""
        first = not self.condstore
        self.condstore = True
        if self.selected is not None:
            self.selected.condstore = True
            if first and announce:
                self._untagged(b"* OK [HIGHESTMODSEQ %d] Highest." % self.selected.highestmodseq)

    async def cmd_getquotaroot(self, tag: bytes, args: Args) -> None:
        name = self._mailbox_arg(args)
        args.end()
        await self._user().check(name)  # NONEXISTENT if missing
        self._untagged(b"* QUOTAROOT " + self._mbox(name) + b' ""')
        self._untagged(await self._quota_line())
        await self._ok(tag, b"GETQUOTAROOT completed.")

    async def cmd_getquota(self, tag: bytes, args: Args) -> None:
        root = args.astring()
        args.end()
        if root != b"":
            self._tagged(tag, replies.Reply(b"NO", b"NONEXISTENT", b"No such quota root."))
            return
        self._untagged(await self._quota_line())
        await self._ok(tag, b"GETQUOTA completed.")

    def cmd_setquota(self, tag: bytes, args: Args) -> None:
        args.rest()
        self._tagged(tag, replies.Reply(b"NO", b"NOPERM", b"Quotas are set by the operator."))

    async def _quota_line(self) -> bytes:
        used, limit = await self._user().quota()
        if not limit:
            return b'* QUOTA "" ()'
        return b'* QUOTA "" (STORAGE %d %d)' % ((used + 1023) // 1024, limit // 1024)

    async def cmd_idle(self, tag: bytes, args: Args) -> None:
        args.end()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_done = done
        self._idle_tag = tag
        await self._report_changes(allow_expunge=True)
        self._write(b"+ idling")
        if self.notify is not None:
            self.notify.kick()

        def on_line(line: bytes) -> None:
            if line.strip().upper() != b"DONE":
                self._write(b"* BAD Expected DONE.")
                return
            self._line_hook = None
            self._idle_tag = None
            self._stop_idle_poll()
            if not done.done():
                done.set_result(None)

        self._line_hook = on_line
        if self.limits.idle_poll > 0 and self.selected is not None:
            from twisted.internet import task

            self._idle_poll = task.LoopingCall(self.folder_changed)
            self._idle_poll.start(self.limits.idle_poll, now=False)
        try:
            if self.transport is None:  # dropped while the changes were reported
                raise _Done
            await done
        finally:
            self._line_hook = None
            self._idle_tag = None
            self._idle_done = None
            self._stop_idle_poll()
        self._changes_waiting = False  # the OK below reports them
        refresh = self._idle_task
        if refresh is not None and not refresh.done():  # its lines come before the OK
            with contextlib.suppress(Exception):
                await asyncio.shield(refresh)
        if self.notify is not None:
            await self.notify.settle()  # a NOTIFY delivery in progress ends before the OK
        await self._ok(tag, b"IDLE terminated.")

    def _stop_idle_poll(self) -> None:
        if self._idle_poll is not None and self._idle_poll.running:
            self._idle_poll.stop()
        self._idle_poll = None

    def folder_changed(self) -> None:
        """The Notifier (or the IDLE poll) says the selected folder changed."""
        if self._idle_tag is None or self.selected is None or self.transport is None:
            return
        if self._gate.paused:  # not read yet: the diff goes out once the client reads
            self._changes_waiting = True
            return
        if self._idle_refreshing:  # one refresh at a time; one more after it
            self._idle_again = True
            return
        self._idle_refreshing = True
        self._idle_task = _background(self._idle_refresh())

    async def _idle_refresh(self) -> None:
        try:
            while True:
                self._idle_again = False
                if self._idle_tag is None or self.selected is None:
                    return
                await self._report_changes(allow_expunge=True)
                if not self._idle_again:
                    return
        except Exception:
            log.exception("event=imap.idle_refresh_failed session=%s", self.session)
        finally:
            self._idle_refreshing = False

    # -- selected ----------------------------------------------------------------

    def _targets(self, sel: SelectedFolder, seqset: SeqSet | bytes | None, *,
                 uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs of a sequence set, or of ``$`` (None): the saved SEARCH
        result, whose expunged messages are gone from it (RFC 5182 §2.1)."""
        if isinstance(seqset, bytes):
            seqset = _seq_arg(seqset)
        if seqset is None:
            pos = {u: i + 1 for i, u in enumerate(sel.uids)}
            return [(pos[u], u) for u in sorted(self.saved) if u in pos]
        return sel.resolve(seqset, uid=uid)

    def _sel(self) -> SelectedFolder:
        assert self.selected is not None
        return self.selected

    async def cmd_check(self, tag: bytes, args: Args) -> None:
        args.end()
        await self._ok(tag, b"CHECK completed.")

    async def cmd_close(self, tag: bytes, args: Args) -> None:
        args.end()
        sel = self._sel()
        if not sel.readonly:
            await sel.view.expunge()
        self._deselect()
        self._tagged(tag, replies.Reply(b"OK", None, b"CLOSE completed."))

    def cmd_unselect(self, tag: bytes, args: Args) -> None:
        args.end()
        self._deselect()
        self._tagged(tag, replies.Reply(b"OK", None, b"UNSELECT completed."))

    async def cmd_expunge(self, tag: bytes, args: Args, uid: bool = False) -> None:
        sel = self._sel()
        only: list[int] | None = None
        if uid:
            only = [u for _, u in self._targets(sel, args.atom(), uid=True)]
        args.end()
        if sel.readonly:
            self._tagged(tag, replies.READ_ONLY)
            return
        removed = await sel.view.expunge(only)
        await self._untagged_many(sel.expunged(removed))
        await self._ok(tag, b"EXPUNGE completed.")

    async def _untagged_many(self, lines: Iterable[bytes]) -> None:
        """Write many untagged lines, letting the loop breathe every few hundred."""
        for i, line in enumerate(lines, 1):
            self._untagged(line)
            if self._gate.paused:  # the client is not reading: wait for room
                await self._gate.wait()
            elif i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def cmd_store(self, tag: bytes, args: Args, uid: bool = False) -> None:
        sel = self._sel()
        seqset = _seq_arg(args.atom())
        unchanged_since = None
        if isinstance(args.peek(), list):  # store-modifiers (RFC 7162 §3.1.3)
            mods = args.plist()
            if (len(mods) != 2 or not isinstance(mods[0], Atom)
                    or mods[0].upper() != b"UNCHANGEDSINCE"):
                raise ParseError("unknown STORE modifier")
            unchanged_since = _number(mods[1], "UNCHANGEDSINCE", maximum=_MAX_MODSEQ)
            self._enable_condstore()
        item = args.atom().upper()
        m = re.fullmatch(rb"([+-]?)FLAGS(\.SILENT)?", item)
        if not m:
            raise ParseError("bad STORE item")
        tok = args.next()
        flags = _parse_flags(tok if isinstance(tok, list) else [tok, *args.rest()])
        args.end()
        if sel.readonly:
            self._tagged(tag, replies.READ_ONLY)
            return
        mode = {b"+": 1, b"-": -1, b"": 0}[m.group(1)]
        silent = bool(m.group(2))
        targets = self._targets(sel, seqset, uid=uid)
        flags = [f for f in flags if f != "\\Recent"]
        live = [u for _, u in targets if u not in sel.gone]
        result, modified, seqs = (await sel.view.store_flags_cond(
            live, flags, mode, unchanged_since) if live else ({}, [], {}))
        sel.modseq.update(seqs)
        if seqs:
            sel.highestmodseq = max(sel.highestmodseq, *seqs.values())
        for line in sel.announce(result.values()):
            self._untagged(line)
        for i, (_seq, u) in enumerate(targets, 1):
            if u not in result:
                continue
            sel.set_flags(u, result[u])
            if not silent or sel.condstore:  # RFC 7162 §3.1.3: MODSEQ even when .SILENT
                self._untagged(sel.flags_fetch(u, with_uid=uid, silent=silent))
            if self._gate.paused:
                await self._gate.wait()
            elif i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        code = None
        if modified:
            failed = modified if uid else [sel.seq_of(u) for u in modified]
            code = b"MODIFIED " + format_uid_set(sorted(failed))
        await self._ok(tag, b"STORE completed." if code is None else
                       b"Conditional STORE failed.", code, allow_expunge=False)

    async def cmd_copy(self, tag: bytes, args: Args, uid: bool = False) -> None:
        await self._copy(tag, args, uid=uid, move=False)

    async def cmd_move(self, tag: bytes, args: Args, uid: bool = False) -> None:
        await self._copy(tag, args, uid=uid, move=True)

    async def _copy(self, tag: bytes, args: Args, *, uid: bool, move: bool) -> None:
        sel = self._sel()
        seqset = _seq_arg(args.atom())
        name = self._mailbox_arg(args)
        args.end()
        if move and sel.readonly:
            self._tagged(tag, replies.READ_ONLY)
            return
        try:
            dest: MailboxView = await self._user().open(name)
        except errors.NoSuchFolder:
            self._tagged(tag, replies.TRYCREATE)
            return
        uids = [u for _, u in self._targets(sel, seqset, uid=uid) if u not in sel.gone]
        pairs, removed = await sel.view.copy_to(uids, dest, move=move) if uids else ([], [])
        code = None
        if pairs:
            code = b"COPYUID %d %s %s" % (
                dest.uidvalidity,
                format_uid_set([p[0] for p in pairs]),
                format_uid_set([p[1] for p in pairs]),
            )
        verb = b"MOVE" if move else b"COPY"
        if not move:
            await self._ok(tag, verb + b" completed.", code)
            return
        if code is not None:
            self._untagged(b"* OK [" + code + b"] Moved.")
        if removed:
            await self._untagged_many(sel.expunged(removed))
        await self._ok(tag, verb + b" completed.")

    async def cmd_search(self, tag: bytes, args: Args, uid: bool = False) -> None:
        sel = self._sel()
        ret = self._return_opts(tag, args)  # RFC 4731 ESEARCH, RFC 5267: SEARCH RETURN (...)
        if ret is None and self.rev2:
            ret = ctxmod.ReturnOpts()  # RFC 9051 §6.4.4: ESEARCH, as if RETURN (ALL)
        save = ret is not None and ret.save
        try:
            await self._search(tag, sel, args.rest(), uid, ret, save)
        except BaseException:
            if save:
                self.saved = []  # RFC 5182 §2.1: a failed SAVE search leaves $ empty
            raise

    def _return_opts(self, tag: bytes, args: Args) -> ctxmod.ReturnOpts | None:
        """``RETURN (...)`` of SEARCH/SORT, if there (RFC 4731, 5182, 5267).  UPDATE with
        the tag of a live context is BAD; one over the bound of live contexts is dropped
        with ``* NO [NOUPDATE "tag"]`` (the search itself is answered)."""
        first = args.peek()
        if not (isinstance(first, Atom) and first.upper() == b"RETURN"):
            return None
        args.next()
        ret = ctxmod.parse_return(args.plist())
        if ret.update and tag in self._contexts:
            if ret.save:
                self.saved = []
            self._tagged(tag, replies.Reply(b"BAD", b"CLIENTBUG",
                                            b"Search context tag already in use."))
            raise _Done
        if ret.update and self._contexts.full():
            self._untagged(b"* NO [NOUPDATE " + quote(tag) + b"] Too many search contexts.")
            ret = ret.without_update()
        return ret

    def _save_result(self, ret: ctxmod.ReturnOpts, found: list[int]) -> None:
        """SEARCHRES: keep UIDs ``found`` (in result order) as ``$``; with MIN/MAX and
        neither ALL nor COUNT only those (RFC 5182 §2.4)."""
        names = ret.names
        if {b"MIN", b"MAX"} & names and not {b"ALL", b"COUNT"} & names:
            keep = {found[0]} if b"MIN" in names and found else set()
            if b"MAX" in names and found:
                keep.add(found[-1])
            self.saved = sorted(keep)
        else:
            self.saved = sorted(found)

    async def _matching(self, sel: SelectedFolder, keys: list[Token]
                        ) -> tuple[Query, list[tuple[int, int]]]:
        """Compile search keys and evaluate them: (query, matching (seq, uid) pairs)."""
        max_uid = sel.uids[-1] if sel.uids else 0
        saved = list(self.saved)
        if len(keys) > 64:  # up to MAX_SEARCH_KEYS: compile off the loop
            query = await asyncio.to_thread(parse_search, keys, max_seq=sel.exists,
                                            max_uid=max_uid, saved=saved)
        else:
            query = parse_search(keys, max_seq=sel.exists, max_uid=max_uid, saved=saved)
        snapshot = [(i + 1, u) for i, u in enumerate(sel.uids) if u not in sel.gone]
        if query.uses_modseq:
            self._enable_condstore()
        info = sel.info
        if not query.needs_content and len(snapshot) * query.keys <= INLINE_MAX:
            # flags, sizes, internal dates, UIDs: what the session holds, no message read;
            # a hop to the mailbox thread and a store-backed candidate per message cost
            # more than the test (issue 20).  Bounded by messages x keys: a program of
            # MAX_SEARCH_KEYS keys over a big folder is work for the pool, not the loop.
            return query, [(seq, u) for seq, u in snapshot
                           if u in info and query.matches(_Held(sel, seq, u))]
        metas = await sel.metas(sel.uids) if query.needs_content else {}
        folder_id = sel.view.cache_id

        def evaluate(folder: Any) -> list[tuple[int, int]]:
            # on the mailbox pool: bodies are read and decoded here, never on the loop
            return [(seq, u) for seq, u in snapshot if u in info
                    and query.matches(_Candidate(sel, folder, seq, u, metas.get(u), folder_id))]

        return query, await sel.view.call(evaluate)

    async def _search(self, tag: bytes, sel: SelectedFolder, keys: list[Token], uid: bool,
                      ret: ctxmod.ReturnOpts | None, save: bool) -> None:
        saved_before = tuple(self.saved)
        query, pairs = await self._matching(sel, keys)
        hits = [u if uid else seq for seq, u in pairs]
        if query.uses_modseq:
            self._enable_condstore()
        found = [u for _, u in pairs]
        top = max((sel.modseq.get(u, 0) for u in found), default=0)
        if ret is None:
            tail = b""
            if query.uses_modseq and hits:  # RFC 7162 §3.1.5: the highest mod-sequence
                tail = b" (MODSEQ %d)" % top
            self._untagged(b"* SEARCH" + b"".join(b" %d" % h for h in hits) + tail)
        else:
            modseq = 0
            if query.uses_modseq:  # RFC 4731 §3.2: of the messages the options return
                modseq = ctxmod.returned_modseq(ret, [sel.modseq.get(u, 0) for u in found])
            line = ctxmod.render(tag, uid, ret, hits, modseq)
            if line is not None:
                self._untagged(line)
            if save:
                self._save_result(ret, found)
            if ret.update:  # RFC 5267 §4.2: kept up to date while selected
                self._contexts.add(sel, ctxmod.SearchContext(
                    tag, uid, ret, list(keys), saved_before, found))
        await self._ok(tag, b"SEARCH completed.", allow_expunge=False)

    async def cmd_sort(self, tag: bytes, args: Args, uid: bool = False) -> None:
        """RFC 5256 SORT: ``SORT (criteria) charset search-keys``; RFC 5267 ESORT:
        ``SORT RETURN (options) (criteria) charset search-keys``."""
        sel = self._sel()
        ret = self._return_opts(tag, args)
        criteria: list[tuple[str, bool]] = []
        reverse = False
        crit_toks = args.plist()
        for tok in crit_toks:
            word = bytes(tok).upper().decode("ascii", "replace") if isinstance(tok, Atom) else ""
            if word == "REVERSE" and not reverse:
                reverse = True
                continue
            if word not in sortmod.CRITERIA:
                raise ParseError("unknown sort criterion")
            criteria.append((word, reverse))
            reverse = False
        if not criteria or reverse:
            raise ParseError("sort criterion expected")
        charset = self._sort_charset(args)
        if ret is None:  # RETURN after the charset, where imaptest's sort-partial puts it
            ret = self._return_opts(tag, args)
        saved_before = tuple(self.saved)
        try:
            program = self._sort_program(args, charset)
            ordered = sortmod.sort_messages(await self._sort_keys(sel, program), criteria)
        except BaseException:
            if ret is not None and ret.save:
                self.saved = []
            raise
        ident = (lambda m: m.uid) if uid else (lambda m: m.seq)
        if ret is None:
            self._untagged(b"* SORT" + b"".join(b" %d" % ident(m) for m in ordered))
        else:  # RFC 5267 §3: ESEARCH, the lists in sort order
            line = ctxmod.render(tag, uid, ret, [ident(m) for m in ordered])
            if line is not None:
                self._untagged(line)
            if ret.save:
                self._save_result(ret, [m.uid for m in ordered])
            if ret.update:
                self._contexts.add(sel, ctxmod.SearchContext(
                    tag, uid, ret, program, saved_before, [m.uid for m in ordered],
                    criteria, {m.uid: m for m in ordered}))
        await self._ok(tag, b"SORT completed.", allow_expunge=False)

    async def cmd_cancelupdate(self, tag: bytes, args: Args) -> None:
        """RFC 5267 §4.3: ``CANCELUPDATE "tag" ...`` ends search contexts."""
        tags: list[bytes] = []
        while args.more():
            tok = args.next()
            if not isinstance(tok, String):
                raise ParseError("quoted tag expected")
            tags.append(bytes(tok))
        if not tags:
            raise ParseError("CANCELUPDATE needs a tag")
        if not self._contexts.cancel(tags):
            self._tagged(tag, replies.Reply(b"BAD", b"CLIENTBUG", b"No such search context."))
            return
        await self._ok(tag, b"CANCELUPDATE completed.")

    async def cmd_thread(self, tag: bytes, args: Args, uid: bool = False) -> None:
        """RFC 5256 THREAD: ``THREAD algorithm charset search-keys``."""
        sel = self._sel()
        algorithm = args.atom().upper()
        if algorithm not in (b"ORDEREDSUBJECT", b"REFERENCES"):
            raise ParseError("unknown threading algorithm")
        keys = await self._sort_keys(sel, self._sort_program(args))
        roots = (sortmod.thread_orderedsubject(keys) if algorithm == b"ORDEREDSUBJECT"
                 else sortmod.thread_references(keys))
        ident: Callable[[sortmod.SortKeys], int] = (
            (lambda m: m.uid) if uid else (lambda m: m.seq))
        threads = sortmod.render_threads(roots, ident)
        self._untagged(b"* THREAD" + (b" " + threads if threads else b""))
        await self._ok(tag, b"THREAD completed.", allow_expunge=False)

    def _sort_program(self, args: Args, charset: bytes | None = None) -> list[Token]:
        """The charset (mandatory for SORT/THREAD) and search keys, as a search program."""
        return [Atom(b"CHARSET"), Atom(charset or self._sort_charset(args)), *args.rest()]

    @staticmethod
    def _sort_charset(args: Args) -> bytes:
        charset = args.astring().decode("ascii", "replace").upper()
        if charset not in SUPPORTED_CHARSETS:
            raise BadCharset(charset)
        return charset.encode()

    async def _sort_keys(self, sel: SelectedFolder, program: list[Token]
                         ) -> list[sortmod.SortKeys]:
        """Sort inputs of the messages matching ``program``, from the cached summaries."""
        _, pairs = await self._matching(sel, program)
        return await ctxmod.sort_inputs(sel, pairs)

    async def cmd_fetch(self, tag: bytes, args: Args, uid: bool = False) -> None:
        sel = self._sel()
        seqset = _seq_arg(args.atom())
        items = parse_fetch_atts(args.next())
        changed_since = None
        vanished = False
        if args.more():  # fetch-modifiers (RFC 7162 §3.1.4, §3.2.6)
            mods = args.plist()
            words = [bytes(m).upper() if isinstance(m, Atom) else b"" for m in mods]
            if len(mods) == 3 and words[2] == b"VANISHED":
                vanished = True
                mods, words = mods[:2], words[:2]
            if len(mods) != 2 or words[0] != b"CHANGEDSINCE":
                raise ParseError("unknown FETCH modifier")
            changed_since = _number(mods[1], "CHANGEDSINCE", maximum=_MAX_MODSEQ)
            if vanished and not (uid and self.qresync):
                raise ParseError("VANISHED needs UID FETCH and QRESYNC enabled")
            if not any(i.name == "MODSEQ" for i in items):
                items.append(FetchItem("MODSEQ", label=b"MODSEQ"))
        args.end()
        if any(i.name == "MODSEQ" for i in items):
            self._enable_condstore()
        if uid and not any(i.name == "UID" for i in items):
            items.insert(0, FetchItem("UID", label=b"UID"))
        targets = [(s, u) for s, u in self._targets(sel, seqset, uid=uid) if u not in sel.gone]
        if changed_since is not None:
            targets = [(s, u) for s, u in targets if sel.modseq.get(u, 0) > changed_since]
        if vanished:
            assert changed_since is not None
            gone = await sel.view.expunged_since(changed_since)
            top = max([*gone, *sel.uids[-1:]], default=0)
            gone = [u for u in gone if u not in sel.info
                    and (u in self.saved if seqset is None else seqset.contains(u, top))]
            if gone:
                self._untagged(b"* VANISHED (EARLIER) " + format_uid_set(gone))
        await self._fetch(tag, sel, targets, items)

    async def _fetch(self, tag: bytes | None, sel: SelectedFolder, targets: list[tuple[int, int]],
                     items: list[FetchItem]) -> None:
        meta_items = {"ENVELOPE", "BODYSTRUCTURE", "BODY"}
        parsed = [i.name for i in items if i.name in meta_items or (
            i.name in ("BODY[]", "BINARY", "BINARY.SIZE") and i.section and (i.section.path or i.section.text))]
        needs_meta = bool(parsed)
        # ENVELOPE and no other parsed item (what list views fetch): the header alone
        envelope_only = needs_meta and all(n == "ENVELOPE" for n in parsed)
        needs_data = any(i.name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]",
                                    "BINARY", "BINARY.SIZE") for i in items)
        sets_seen = not sel.readonly and any(
            i.name in ("BODY[]", "BINARY", "RFC822", "RFC822.TEXT") and not i.peek
            for i in items
        )
        self._unknown_cte = False
        newly_seen: set[int] = set()
        if sets_seen:
            unseen = [u for _, u in targets if "\\Seen" not in sel.info[u].flags]
            if unseen:
                result, _, seqs = await sel.view.store_flags_cond(unseen, ["\\Seen"], 1)
                for u, flags in result.items():
                    sel.set_flags(u, flags)
                sel.modseq.update(seqs)
            newly_seen = set(unseen)
        # the session's _OutputGate paces the writes: a client that does not read gets
        # no further than the transport's buffer (and is dropped after a while)
        for chunk in _fetch_batches(targets, sel, needs_data):
            batch_uids = [u for _, u in chunk]
            data_of = await sel.view.read_many(batch_uids) if needs_data else {}
            metas: Mapping[int, mime.MessageMeta | mime.EnvelopeOnly] = (
                {} if not needs_meta else await sel.envelopes(batch_uids, data_of) if envelope_only
                else await sel.metas(batch_uids, data_of))
            if self.transport is None:
                return
            for i, (seq, u) in enumerate(chunk, 1):
                if i % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # rendering is CPU: let others in
                if self.transport is None or self._closing:
                    return
                data: bytes | None = None
                if needs_data:
                    data = data_of.get(u)
                    if data is None:
                        continue  # expunged meanwhile: report at the next boundary
                meta = metas.get(u)
                if needs_meta and meta is None:
                    continue
                if u not in sel.info:
                    continue
                parts = self._render_fetch(sel, u, items, meta, data, u in newly_seen)
                if not await self._send([b"* %d FETCH (" % seq, *parts, b")\r\n"]):
                    return
            await asyncio.sleep(0)  # a batch at a time: other sessions keep going
        if tag is None:  # a NOTIFY MessageNew fetch (RFC 5465 §5.2): no completion
            return
        if self._unknown_cte:  # RFC 3516 §4.3
            self._tagged(tag, replies.Reply(b"NO", b"UNKNOWN-CTE",
                                            b"Cannot decode the part's transfer encoding."))
            return
        await self._ok(tag, b"FETCH completed.", allow_expunge=False)

    def _render_fetch(self, sel: SelectedFolder, uid: int, items: list[FetchItem],
                      meta: mime.MessageMeta | mime.EnvelopeOnly | None, data: bytes | None,
                      newly_seen: bool) -> list[bytes]:
        info = sel.info[uid]
        out: list[bytes] = []
        names = {i.name for i in items}

        def add(label: bytes, value: bytes) -> None:
            out.append((b" " if out else b"") + label + b" " + value)

        for it in items:
            n = it.name
            if n == "UID":
                add(b"UID", b"%d" % uid)
            elif n == "FLAGS":
                add(b"FLAGS", format_flags(sel.shown_flags(uid)))
            elif n == "MODSEQ":
                add(b"MODSEQ", b"(%d)" % sel.modseq.get(uid, 0))
            elif n == "INTERNALDATE":
                add(b"INTERNALDATE", mime.format_internal_date(info.internal_date))
            elif n == "RFC822.SIZE":
                add(b"RFC822.SIZE", b"%d" % info.size)
            elif n == "ENVELOPE":
                assert meta is not None
                add(b"ENVELOPE", meta.envelope)
            elif n == "BODYSTRUCTURE":
                assert isinstance(meta, mime.MessageMeta)
                add(b"BODYSTRUCTURE", meta.bodystructure)
            elif n == "BODY":
                assert isinstance(meta, mime.MessageMeta)
                add(b"BODY", meta.body)
            elif n in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                assert data is not None
                if n == "RFC822":
                    value = data
                else:
                    _, bstart = mime.header_end(data, 0, len(data))
                    value = data[:bstart] if n == "RFC822.HEADER" else data[bstart:]
                add(n.encode(), _literal(value))
            elif n in ("BINARY", "BINARY.SIZE"):
                assert data is not None and it.section is not None
                tree = meta.tree if isinstance(meta, mime.MessageMeta) else (0, 0, len(data), 0, ())
                try:
                    decoded: bytes | None = mime.binary_section(data, tree, it.section.path)
                except mime.SectionError:
                    decoded = None
                except mime.UnknownCTE:
                    self._unknown_cte = True
                    decoded = None
                if n == "BINARY.SIZE":
                    add(it.label, b"NIL" if decoded is None else b"%d" % len(decoded))
                elif decoded is None:
                    add(it.label, b"NIL")
                else:
                    chunk = mime.partial(decoded, it.start, it.length)
                    # literal8 when it holds a NUL (RFC 3516 §4.2); a plain literal otherwise
                    add(it.label, (b"~{%d}\r\n" % len(chunk) + chunk) if b"\0" in chunk
                        else _literal(chunk))
            elif n == "BODY[]":
                assert data is not None and it.section is not None
                tree = meta.tree if isinstance(meta, mime.MessageMeta) else (0, 0, len(data), 0, ())
                if not it.section.path and not it.section.text:
                    raw: bytes | None = data
                else:
                    try:
                        raw = mime.section_bytes(data, tree, it.section)
                    except mime.SectionError:
                        raw = None
                if raw is None:
                    add(it.label, b"NIL")
                else:
                    add(it.label, _literal(mime.partial(raw, it.start, it.length)))
        if newly_seen and "FLAGS" not in names:
            add(b"FLAGS", format_flags(sel.shown_flags(uid)))
        if newly_seen and sel.condstore:  # RFC 7162 §3.1: a flag change carries UID, MODSEQ
            if "UID" not in names:
                add(b"UID", b"%d" % uid)
            if "MODSEQ" not in names:
                add(b"MODSEQ", b"(%d)" % sel.modseq.get(uid, 0))
        return out


_YIELD_EVERY = 64  # untagged lines rendered between two turns of the loop
_HOLD_MAX = 64 * 1024  # a running command's held output is written once it reaches this
_SEND_PIECE = 256 * 1024  # a big body is written in pieces of this size, as the client reads
_BIG_COMMAND = 4096  # command lines longer than this are tokenized off the loop


def _tokenize_and_warm(lines: list[bytes], lits: list[bytes]) -> list[Token]:
    """Worker thread: tokenize, and parse every sequence-set-looking atom once so
    the handler's ``SeqSet.parse`` finds it in the parser's cache."""
    tokens = tokenize(lines, lits)
    for tok in tokens[2:]:
        if isinstance(tok, Atom) and len(tok) > 64:
            with contextlib.suppress(ParseError):
                SeqSet.parse(bytes(tok))
    return tokens
_FETCH_BATCH = 200  # messages per pool hop
_FETCH_BATCH_BYTES = 8 * 1024 * 1024  # message bytes read per pool hop


def _fetch_batches(targets: list[tuple[int, int]], sel: SelectedFolder,
                   needs_data: bool) -> Iterable[list[tuple[int, int]]]:
    """Cut FETCH targets into batches of bounded count (and bytes, when bodies are read)."""
    chunk: list[tuple[int, int]] = []
    size = 0
    for t in targets:
        info = sel.info.get(t[1])
        weight = info.size if (needs_data and info is not None) else 0
        if chunk and (len(chunk) >= _FETCH_BATCH or size + weight > _FETCH_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(t)
        size += weight
    if chunk:
        yield chunk


_BACKGROUND: set[asyncio.Future[Any]] = set()


def _soon(fn: Callable[[], object]) -> None:
    """Call ``fn`` on the next turn of the loop.  ``loop.call_soon`` when the reactor runs on
    asyncio (always, but in unit tests without a loop): Twisted's ``callLater(0)`` builds a
    DelayedCall, keeps a heap and re-arms an asyncio timer each time, a visible per-command
    cost in the stress profile (issue 20)."""
    try:
        asyncio.get_running_loop().call_soon(fn)
    except RuntimeError:
        _reactor().callLater(0, fn)


def _background(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """Run a fire-and-forget coroutine, keeping a reference until it is done."""
    fut = asyncio.ensure_future(coro)
    _BACKGROUND.add(fut)
    fut.add_done_callback(_BACKGROUND.discard)
    return fut


_MAX_MODSEQ = (1 << 63) - 1
_DATE_TIME = re.compile(rb" ?\d{1,2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}")
_STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"HIGHESTMODSEQ",
                 b"SIZE", b"DELETED")  # SIZE: RFC 8438; DELETED: RFC 9051 (offered to rev1 too)
_LIST_SELECT = {b"SUBSCRIBED", b"REMOTE", b"RECURSIVEMATCH", b"SPECIAL-USE"}  # RFC 5258, 6154
_LIST_RETURN = {b"SUBSCRIBED", b"CHILDREN", b"SPECIAL-USE"}  # and STATUS (RFC 5819)


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _status_body(st: Any, items: Iterable[bytes]) -> bytes:
    values = {
        b"MESSAGES": st.messages, b"RECENT": st.recent, b"UIDNEXT": st.uidnext,
        b"UIDVALIDITY": st.uidvalidity, b"UNSEEN": st.unseen,
        b"HIGHESTMODSEQ": st.extra.get("highestmodseq", 0),
        b"SIZE": st.size, b"DELETED": st.extra.get("deleted", 0),
    }
    return b" ".join(b"%s %d" % (i, values[i]) for i in items)


def _is_atom(tok: Token | None, word: bytes) -> bool:
    return isinstance(tok, Atom) and tok.upper() == word


def _seq_arg(raw: bytes) -> SeqSet | None:
    """A sequence-set argument; None for ``$`` (RFC 5182 SEARCHRES)."""
    return None if raw == b"$" else SeqSet.parse(raw)


def _number(tok: Token, what: str, *, maximum: int) -> int:
    """A non-negative decimal atom no larger than ``maximum`` (mod-sequences: 63 bits)."""
    if not isinstance(tok, Atom) or not bytes(tok).isdigit() or len(tok) > 19:
        raise ParseError(f"{what} needs a number")
    value = int(bytes(tok))
    if value > maximum:
        raise ParseError(f"{what} out of range")
    return value


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _literal(value: bytes) -> bytes:
    """An IMAP literal of message data.  NUL may not appear outside literal8 (RFC 3501
    4.3, RFC 9051 4.3): a stored message that holds one (the MX refuses them, but an
    import may bring one) is served with 0x80 in its place, as Dovecot does; the length,
    and so RFC822.SIZE and partial FETCH offsets, stay the same."""
    return b"{%d}\r\n" % len(value) + value.replace(b"\0", b"\x80")


def _new_session_id() -> str:
    import secrets

    return secrets.token_hex(5)


def _normalise_name(name: str) -> str:
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX/"):
        name = "INBOX" + name[5:]
    parts = name.split("/")
    if (not name or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
            or "*" in name or "%" in name):
        raise MailboxNameError("invalid mailbox name")
    return name


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    rx = "".join(out)
    if pattern.upper().startswith("INBOX"):
        rx = "(?i:INBOX)" + "".join(out[5:])
    return re.compile("^" + rx + "$", re.S)


def _parse_flags(tokens: Iterable[Token]) -> list[str]:
    out: list[str] = []
    for tok in tokens:
        if not isinstance(tok, Atom):
            raise ParseError("flag expected")
        flag = bytes(tok).decode("utf-8", "strict")
        if not _FLAG_ATOM_RE.match(flag):
            raise ParseError("bad flag")
        if flag.startswith("\\"):
            canon = {f.lower(): f for f in (*SYSTEM_FLAGS, "\\Recent")}.get(flag.lower())
            if canon is None:
                raise ParseError("unknown system flag")
            flag = canon
        out.append(flag)
    return out


class _Held:
    """:class:`search.Candidate` for keys that need no message content (a query whose
    ``needs_content`` is false never asks for headers or texts), from the session's own
    snapshot; the flags and mod-sequence only when a key asks."""

    __slots__ = ("_sel", "seq", "uid")

    def __init__(self, sel: SelectedFolder, seq: int, uid: int) -> None:
        self.seq = seq
        self.uid = uid
        self._sel = sel

    @property
    def flags(self) -> frozenset[str]:
        return self._sel.flags_of(self.uid)

    @property
    def modseq(self) -> int:
        return self._sel.modseq.get(self.uid, 0)

    @property
    def size(self) -> int:
        return self._sel.info[self.uid].size

    @property
    def internal_date(self) -> dt.datetime:
        return self._sel.info[self.uid].internal_date

    def header(self, name: str) -> list[str] | None:
        raise AssertionError("content asked of a content-free search")

    def sent(self) -> dt.date | None:
        raise AssertionError("content asked of a content-free search")

    def body_text(self) -> str:
        raise AssertionError("content asked of a content-free search")

    def full_text(self) -> str:
        raise AssertionError("content asked of a content-free search")


class _Candidate:
    """Adapter from the selected folder to :class:`search.Candidate`.

    Used on the mailbox pool only: ``folder`` is the blocking store folder.
    """

    def __init__(self, sel: SelectedFolder, folder: Any, seq: int, uid: int,
                 meta: mime.MessageMeta | None, folder_id: str | None = None) -> None:
        self.seq = seq
        self.uid = uid
        info = sel.info[uid]
        self._key = info.key
        self._folder_id = folder_id  # the view's cache id: texts are kept (textcache)
        self.flags = sel.flags_of(uid)
        self.modseq = sel.modseq.get(uid, 0)
        self.size = info.size
        self.internal_date = info.internal_date
        self._folder = folder
        self._meta = meta
        self._data: bytes | None = None
        self._ent: mime.Entity | None = None

    def _entity(self) -> tuple[bytes, mime.Entity]:
        if self._data is None or self._ent is None:
            try:
                self._data = self._folder.read(self.uid)
            except (KeyError, FileNotFoundError):
                self._data = b""
                self._folder_id = None  # gone meanwhile: its empty text is not kept
            self._ent = mime.parse_message(self._data)
        return self._data, self._ent

    def _text(self, headers: bool) -> str:
        """The searchable text, from the process's text cache when it holds it (the
        message file is neither read nor parsed then)."""
        fid = self._folder_id
        if fid is not None:
            hit = textcache.TEXTS.get(fid, self._key, headers)
            if hit is not None:
                return hit
        data, ent = self._entity()
        text = mime.searchable_text(data, ent, headers=headers).casefold()  # kept folded
        if self._folder_id is not None:
            textcache.TEXTS.put(self._folder_id, self._key, headers, text)
        return text

    def header(self, name: str) -> list[str] | None:
        if self._meta is not None and name in mime.SEARCH_HEADERS:
            v = self._meta.search.get(name)
            return None if v is None else [v]
        _, ent = self._entity()
        values = ent.headers.get_all(name)
        if not values:
            return None
        if name in mime.SEARCH_HEADERS:
            return [mime.search_text(name, values)]
        return [mime.decode_header_text(v) for v in values]

    def sent(self) -> dt.date | None:
        if self._meta is not None:
            return dt.date.fromisoformat(self._meta.sent) if self._meta.sent else None
        _, ent = self._entity()
        s = mime.sent_date(ent.headers.get("date"))
        return dt.date.fromisoformat(s) if s else None

    def body_text(self) -> str:
        return self._text(headers=False)

    def full_text(self) -> str:
        return self._text(headers=True)


_ANY = frozenset({"unauth", "auth", "select"})
_AUTHED = frozenset({"auth", "select"})
_SEL = frozenset({"select"})
EsamIMAP4Server._COMMANDS = {
    b"CAPABILITY": ("cmd_capability", _ANY),
    b"NOOP": ("cmd_noop", _ANY),
    b"LOGOUT": ("cmd_logout", _ANY),
    b"ID": ("cmd_id", _ANY),
    b"UNAUTHENTICATE": ("cmd_unauthenticate", _AUTHED),
    b"COMPRESS": ("cmd_compress", _AUTHED),
    b"NOTIFY": ("cmd_notify", _AUTHED),
    b"STARTTLS": ("cmd_starttls", frozenset({"unauth"})),
    b"LOGIN": ("cmd_login", frozenset({"unauth"})),
    b"AUTHENTICATE": ("cmd_authenticate", frozenset({"unauth"})),
    b"SELECT": ("cmd_select", _AUTHED),
    b"EXAMINE": ("cmd_examine", _AUTHED),
    b"CREATE": ("cmd_create", _AUTHED),
    b"DELETE": ("cmd_delete", _AUTHED),
    b"RENAME": ("cmd_rename", _AUTHED),
    b"SUBSCRIBE": ("cmd_subscribe", _AUTHED),
    b"UNSUBSCRIBE": ("cmd_unsubscribe", _AUTHED),
    b"LIST": ("cmd_list", _AUTHED),
    b"LSUB": ("cmd_lsub", _AUTHED),
    b"STATUS": ("cmd_status", _AUTHED),
    b"APPEND": ("cmd_append", _AUTHED),
    b"NAMESPACE": ("cmd_namespace", _AUTHED),
    b"ENABLE": ("cmd_enable", _AUTHED),
    b"GETQUOTAROOT": ("cmd_getquotaroot", _AUTHED),
    b"GETQUOTA": ("cmd_getquota", _AUTHED),
    b"SETQUOTA": ("cmd_setquota", _AUTHED),
    b"IDLE": ("cmd_idle", _AUTHED),
    b"CHECK": ("cmd_check", _SEL),
    b"CLOSE": ("cmd_close", _SEL),
    b"UNSELECT": ("cmd_unselect", _SEL),
    b"EXPUNGE": ("cmd_expunge", _SEL),
    b"SEARCH": ("cmd_search", _SEL),
    b"SORT": ("cmd_sort", _SEL),
    b"THREAD": ("cmd_thread", _SEL),
    b"UID SORT": ("cmd_sort", _SEL),
    b"UID THREAD": ("cmd_thread", _SEL),
    b"CANCELUPDATE": ("cmd_cancelupdate", _SEL),
    b"FETCH": ("cmd_fetch", _SEL),
    b"STORE": ("cmd_store", _SEL),
    b"COPY": ("cmd_copy", _SEL),
    b"MOVE": ("cmd_move", _SEL),
    b"UID FETCH": ("cmd_fetch", _SEL),
    b"UID SEARCH": ("cmd_search", _SEL),
    b"UID STORE": ("cmd_store", _SEL),
    b"UID COPY": ("cmd_copy", _SEL),
    b"UID MOVE": ("cmd_move", _SEL),
    b"UID EXPUNGE": ("cmd_expunge", _SEL),
}


# ---------------------------------------------------------------------------
# Factory and listeners


class IMAPFactory(protocol.ServerFactory):
    """Builds :class:`EsamIMAP4Server` sessions for one listener.

    Args:
        store: the async :class:`MailboxService` (shared by the listeners of a
            process), or a bare store (``MaildirStore``), which gets its own service.
        authenticator: checks passwords (async).
        notifier: cross-process change notifications (IDLE push); may be None.
        tls_context_factory: a Twisted/pyOpenSSL context factory (see
            :func:`tls_options`).  Required for ``implicit_tls``; on a plain
            listener it enables STARTTLS.
        implicit_tls: the listener speaks TLS from the first byte (port 993).
        limits: resource limits.
    """

    def __init__(
        self,
        store: MailboxService | MailboxStore,
        authenticator: Authenticator,
        notifier: Notifier | None,
        *,
        tls_context_factory: Any = None,
        implicit_tls: bool = False,
        limits: IMAPLimits | None = None,
    ) -> None:
        if implicit_tls and tls_context_factory is None:
            raise ValueError("implicit TLS needs a tls_context_factory")
        self.authenticator = authenticator
        self.notifier = notifier
        self.tls_context_factory = tls_context_factory
        self.implicit_tls = implicit_tls
        self.limits = limits or IMAPLimits()
        if not isinstance(store, MailboxService):
            store = MailboxService(store, notifier, workers=self.limits.store_workers,
                                   summary_cache=self.limits.meta_cache_entries)
        self.mailboxes = store
        self.sessions: set[EsamIMAP4Server] = set()
        imap_metrics.watch_factory(self)  # open sessions in /metrics
        self._unsubscribe: Callable[[], None] | None = None

    def buildProtocol(self, addr: Any) -> EsamIMAP4Server:
        p = EsamIMAP4Server(self, implicit_tls=self.implicit_tls)
        p.factory = self
        return p

    def startFactory(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.mailboxes.subscribe(self._on_change)

    def stopFactory(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_change(self, login: str, folder: str) -> None:
        # may be called from a notifier thread: hop onto the reactor thread
        _reactor().callFromThread(self._dispatch, login, folder)

    def _dispatch(self, login: str, folder: str) -> None:
        event = parse_list_event(folder)  # a NOTIFY mailbox-list event, or a folder change
        for s in list(self.sessions):
            if s.principal is None or s.principal.login != login:
                continue
            if s.notify is not None:
                if event is not None:
                    s.notify.on_list_event(*event)
                    continue
                s.notify.on_change(folder)
                if s.notify.watches_selected():
                    continue
            if event is None and s.selected is not None and s.selected.name == folder:
                s.folder_changed()

    def close_sessions(self) -> None:
        """Say BYE to every open session (graceful shutdown)."""
        for s in list(self.sessions):
            if s.transport is not None:
                s._write(b"* BYE Server shutting down.")
                s.close_connection()


@dataclass(slots=True)
class IMAPListener:
    """A bound listener: ``port`` is the real port (useful with port 0)."""

    factory: IMAPFactory
    listening: Any  # twisted IListeningPort
    host: str
    port: int

    async def stop(self) -> None:
        """Alias of :meth:`close` (the composition root calls ``stop``)."""
        await self.close()

    async def close(self) -> None:
        """Stop accepting, BYE the open sessions, wait until the port is closed."""
        self.factory.close_sessions()
        d = defer.maybeDeferred(self.listening.stopListening)
        await d.asFuture(asyncio.get_running_loop())


def _reuse_port_listen(factory: Any, host: str, port: int) -> Any:
    """Twisted has no SO_REUSEPORT flag: adopt the supervisor's shared listening socket
    (``esam serve --workers N``: one accept queue, one connection per wake-up), or bind an
    SO_REUSEPORT socket ourselves and adopt it."""
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from esam_mail.sockets import adopt_reuseport, inherited_listener

    if factory.implicit_tls:
        clock: Any = _NextTurnClock()  # provides what IReactorTime the TLS layer uses
        factory = TLSMemoryBIOFactory(factory.tls_context_factory, False, factory, clock=clock)
    listening = adopt_reuseport(_reactor(), host, port, factory)
    if inherited_listener(host, port) is not None:
        _accept_one_at_a_time(listening)
    return listening


def _accept_one_at_a_time(listening: Any) -> None:
    """A Twisted port accepts up to ``numberAccepts`` connections per wake-up (100 at
    first, +20 each time it takes them all): on a shared queue the first worker to wake
    would take a whole burst (16 clients connecting at once) and leave the other idle.
    One per wake-up lets each worker take the next connection only when its loop is back
    in the selector, i.e. when it has time for it."""
    if type(listening) is tcp.Port:
        listening.__class__ = _one_accept_port()


@functools.cache
def _one_accept_port() -> type:
    class OneAcceptPort(tcp.Port):
        @property
        def numberAccepts(self) -> int:  # Twisted's attribute name
            return 1

        @numberAccepts.setter
        def numberAccepts(self, value: int) -> None:
            pass  # doRead's adaptive growth is not wanted here

    return OneAcceptPort


class _NextTurnClock:
    """The clock given to Twisted's TLS layer (``TLSMemoryBIOFactory(clock=...)``), which
    uses it for one thing: ``callLater(0, flush)`` after each burst of writes, to gather them
    into one TLS record.  Through ``loop.call_soon`` instead of the reactor's DelayedCall heap
    and asyncio timer re-arming: once per response, a visible cost under the random-command
    stress (issue 20).  The asyncio ``Handle`` returned has the ``cancel()`` Twisted calls."""

    def callLater(self, delay: float, f: Callable[..., object], *args: Any, **kw: Any) -> Any:
        if delay == 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                return loop.call_soon(functools.partial(f, *args, **kw))
        return _reactor().callLater(delay, f, *args, **kw)

    def seconds(self) -> float:
        return float(_reactor().seconds())

    def getDelayedCalls(self) -> list[Any]:
        return list(_reactor().getDelayedCalls())


def start_listener(factory: IMAPFactory, host: str, port: int, *, reuse_port: bool = False) -> IMAPListener:
    """Listen on ``host:port`` (``port=0`` picks a free port) with the running reactor.

    Requires ``twisted.internet.asyncioreactor`` to be installed (by the composition
    root) before this is called.  Implicit TLS when ``factory.implicit_tls``.
    ``reuse_port``: set SO_REUSEPORT (``esam serve --workers N``).
    """
    reactor = _reactor()
    if reuse_port:
        lp = _reuse_port_listen(factory, host, port)
    elif factory.implicit_tls:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        clock: Any = _NextTurnClock()
        wrapped: Any = factory
        lp = reactor.listenTCP(port, TLSMemoryBIOFactory(factory.tls_context_factory, False, wrapped, clock=clock),
                               interface=host)
    else:
        lp = reactor.listenTCP(port, factory, interface=host)
    bound = lp.getHost().port
    log.info("event=imap.listen host=%s port=%d tls=%s", host, bound,
             "implicit" if factory.implicit_tls else "starttls")
    return IMAPListener(factory, lp, host, bound)


async def start_imap(
    *,
    store: MailboxService | MailboxStore,
    authenticator: Authenticator,
    notifier: Notifier | None,
    cert: Any,
    key: Any,
    hostname: str = "",
    imap: tuple[str, int] | None = None,
    imaps: tuple[str, int] | None = None,
    max_literal_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    idle_timeout: float = DEFAULT_AUTH_TIMEOUT,
    max_connections_per_ip: int = 0,
    limits: IMAPLimits | None = None,
    reuse_port: bool = False,
    store_workers: int | None = None,
    spool_threshold: int | None = None,
) -> tuple[dict[str, int], list[IMAPListener]]:
    """Start the STARTTLS (``imap``) and implicit-TLS (``imaps``) listeners.

    Must run on the asyncio loop that carries the installed asyncio reactor.

    Returns:
        ({"imap": port, "imaps": port} for the started ones, the listeners).
    """
    del hostname  # the greeting does not reveal the host name
    base = limits or IMAPLimits()
    limits = dataclasses.replace(
        base, max_message_size=max_literal_size, auth_timeout=float(idle_timeout),
        max_connections_per_ip=max_connections_per_ip,
        store_workers=store_workers if store_workers is not None else base.store_workers,
        spool_threshold=spool_threshold if spool_threshold is not None else base.spool_threshold,
    )
    ctx = ReloadableTLS(tls_options(str(cert), str(key)))  # swapped on SIGHUP
    if not isinstance(store, MailboxService):  # one pool for both listeners
        store = MailboxService(store, notifier, workers=limits.store_workers,
                               summary_cache=limits.meta_cache_entries)
    ports: dict[str, int] = {}
    listeners: list[IMAPListener] = []
    for name, addr, implicit in (("imap", imap, False), ("imaps", imaps, True)):
        if addr is None:
            continue
        factory = IMAPFactory(store, authenticator, notifier, tls_context_factory=ctx,
                              implicit_tls=implicit, limits=limits)
        listener = start_listener(factory, addr[0], addr[1], reuse_port=reuse_port)
        ports[name] = listener.port
        listeners.append(listener)
    return ports, listeners
