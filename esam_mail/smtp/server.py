"""SMTP front-end on aiosmtpd: MX (25), submission (587 STARTTLS, 465 implicit TLS).

This is the only place that speaks SMTP: it turns
:class:`~esam_mail.errors.DeliveryError` into replies and any other exception
into ``451 4.3.0 ... (session <id>)`` without exception text (RFC 5321,
RFC 3207, RFC 4954, RFC 6409, RFC 8314, RFC 2034, RFC 2920, RFC 6531).

aiosmtpd traps handled here (see docs in ../shared/docs/libraries.md, s. 2):
* AUTH on implicit TLS (465): aiosmtpd hides it; that listener sets
  ``auth_require_tls=False`` and has no ``tls_context`` (it *is* TLS).
* the ``authenticator`` callback is synchronous: we use async ``auth_PLAIN`` /
  ``auth_LOGIN`` handler methods and the password check runs in a thread pool.
* MX offers no AUTH at all; submission sets ``auth_required=True``.
* aiosmtpd's own replies lack enhanced status codes: ``push`` adds them, so
  ENHANCEDSTATUSCODES can be advertised honestly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import re
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from esam_mail.errors import AccountDisabled, AuthError, DeliveryError
from esam_mail.log import event, new_session_id, session_id
from esam_mail.services.auth import Authenticator, Principal
from esam_mail.services.mailflow.delivery import DeliveryService, Route, Transaction
from esam_mail.smtp import codes
from esam_mail.smtp.dotdata import TOO_LONG, read_dot_data
from esam_mail.smtp.metrics import record as record_metric
from esam_mail.smtp.metrics import watch_tracker

log = logging.getLogger(__name__)

_ROOMY = 48 * 1024  # below asyncio's 64 KiB high-water mark even after one more reply


@dataclass
class Limits:
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    timeout: int = 300
    max_commands: int = 1000
    max_connections_per_ip: int = 50
    # a client that stops reading: a reply that cannot be written for this long ends it
    output_stall_timeout: float = 60.0


@dataclass(eq=False)  # identity semantics: hashable, kept in a WeakSet by the metrics
class Tracker:
    """Connections and in-flight transactions, for limits and graceful stop."""

    per_ip: dict[str, int] = field(default_factory=dict)
    sessions: set[EsamSMTP] = field(default_factory=set)
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        watch_tracker(self)  # live values in /metrics

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n
        record_metric(key, n)


class EsamSMTP(SMTP):
    """aiosmtpd's SMTP with our reply policy, limits and session id."""

    def __init__(self, handler: Handler, *, tracker: Tracker, listener: str, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.tracker = tracker
        self.listener = listener
        self.sid = new_session_id()
        self.peer_ip = "?"
        self.commands = 0
        self._in_ehlo = False
        self._counted = False
        self._lost = False
        self.stream: asyncio.StreamReader | None = None
        self._count_commands()

    # -- connection accounting ----------------------------------------------------------
    # A session holds one per-IP slot and one place in ``tracker.sessions`` from
    # ``connection_made`` until whichever comes first of ``connection_lost`` and the end
    # of the command loop (``_release`` is idempotent).  Traps, each with a test in
    # tests/protocol/test_session_counters.py:
    # * STARTTLS: the TLS layer calls ``connection_made`` a second time, with its own
    #   transport, for the same connection: it must not take a second slot.
    # * asyncio's SSLProtocol never calls ``connection_lost`` on us when the connection
    #   dies during the STARTTLS handshake: the handshake waiter then resolves without
    #   error, so ``smtp_STARTTLS`` checks the transport and ends the session itself.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.session is not None:  # STARTTLS: same connection, now in TLS (aiosmtpd made the session)
            token = session_id.set(self.sid)
            try:
                super().connection_made(transport)
            finally:
                session_id.reset(token)
            return
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        n = self.tracker.per_ip.get(self.peer_ip, 0)
        limit = self.event_handler.limits.max_connections_per_ip
        self.tracker.count(f"connections_{self.listener}")
        if n >= limit or self.tracker.stopping:
            reply = codes.R421_SHUTTING_DOWN if self.tracker.stopping else codes.R421_TOO_MANY_CONN
            self.tracker.count("connections_refused_421")
            transport.write(reply.encode() + b"\r\n")  # type: ignore[attr-defined]
            transport.close()
            self.transport = None
            return
        self.tracker.per_ip[self.peer_ip] = n + 1
        self._counted = True
        self.tracker.sessions.add(self)
        token = session_id.set(self.sid)
        try:
            event(log, "smtp.connect", peer=self.peer_ip, listener=self.listener)
            super().connection_made(transport)
        finally:
            session_id.reset(token)

    def _release(self) -> None:
        """Give back the per-IP slot and the session's place (once)."""
        if not self._counted:
            return
        self._counted = False
        left = self.tracker.per_ip.get(self.peer_ip, 1) - 1
        if left <= 0:
            self.tracker.per_ip.pop(self.peer_ip, None)
        else:
            self.tracker.per_ip[self.peer_ip] = left
        self.tracker.sessions.discard(self)
        event(log, "smtp.disconnect", session=self.sid, peer=self.peer_ip, commands=self.commands)

    def connection_lost(self, error: Exception | None) -> None:
        self._release()
        if self._lost:
            return
        self._lost = True
        if self.session is not None:  # aiosmtpd's connection_made ran (not refused above)
            super().connection_lost(error)

    async def smtp_STARTTLS(self, arg: str) -> None:
        plain = self.transport
        await super().smtp_STARTTLS(arg)
        transport = self.transport
        if transport is not plain and (  # the upgrade began (aiosmtpd swapped the transport)
            transport is None or transport.is_closing() or transport.get_extra_info("ssl_object") is None
        ):
            # the connection died during the handshake and nobody told us (see above)
            self.tracker.count("tls_handshake_lost")
            self.connection_lost(None)

    async def _handle_client(self) -> None:
        session_id.set(self.sid)
        try:
            await super()._handle_client()
        finally:
            # however the command loop ends (QUIT, 421, reset, TLS failure, cancel), the
            # session is over: free its slot and make sure the socket goes too
            self._release()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    # -- replies ------------------------------------------------------------------------
    async def push(self, status: Any) -> None:
        if isinstance(status, bytes):
            status = status.decode("utf-8", "surrogateescape")
        if not self._in_ehlo and len(status) > 4 and status[3] == " ":
            code, text = status[:3], status[4:]
            if code in codes.ENHANCED_DEFAULTS and not (text[:1].isdigit() and text[1:2] == "."):
                status = f"{code} {codes.ENHANCED_DEFAULTS[code]} {text}"
            if code[0] in "45" and "(session" not in text:
                status += f" (session {self.sid})"
        transport = self.transport
        if transport is None or transport.get_write_buffer_size() < _ROOMY:  # type: ignore[attr-defined]
            await super().push(status)  # the usual case: drain() will not wait
            return
        # the client has not read the last 64 KiB of replies: wait for it, not for ever
        try:
            async with asyncio.timeout(self.event_handler.limits.output_stall_timeout):
                await super().push(status)
        except TimeoutError:
            log.warning("event=smtp.slow_reader peer=%s", self.session.peer if self.session else "-")
            self.tracker.count("slow_reader")
            transport.abort()  # type: ignore[attr-defined]  # connection_lost ends the command loop and frees the slot
            raise ConnectionResetError("client does not read") from None

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    # -- CHUNKING (RFC 3030) -------------------------------------------------------------
    # aiosmtpd has no BDAT.  The chunk is read from the same stream as the commands, so
    # whatever the reply, every chunk is read (and dropped when refused): the client
    # sends it regardless, and reading it is the only way to find the next command.
    # Only a size we cannot parse leaves us lost: 501, then the connection is closed.
    def _cb_client_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)
        self.stream = reader  # the command stream, which BDAT chunks are read from

    async def smtp_BDAT(self, arg: str) -> None:
        m = _BDAT_ARGS.match(arg or "")
        if m is None:
            await self.push(codes.R501_BDAT_SYNTAX)
            self.tracker.count("bdat_syntax_closed")
            if self.transport is not None:
                self.transport.close()
            return
        size, last = int(m.group(1)), m.group(2) is not None
        assert self.session is not None and self.envelope is not None
        env = self.envelope.__dict__
        error = self._bdat_refusal(env)
        buf: bytearray = env.setdefault("esam_chunks", bytearray())
        limit = self.data_size_limit or 0
        remaining = size
        while remaining:
            assert self.stream is not None
            piece = await self.stream.read(min(remaining, 65536))
            if not piece:  # the client went away; connection_lost does the rest
                return
            remaining -= len(piece)
            if error is None and limit and len(buf) + len(piece) > limit:
                error = codes.R552_TOO_BIG
                env["esam_bdat_failed"] = error  # the rest of this transaction is refused too
                buf.clear()
            if error is None:
                buf += piece
        if error is not None:
            if last or "esam_bdat_failed" not in env:
                env.pop("esam_chunks", None)  # nothing kept for a refused transaction
            if last:
                self._set_post_data_state()
            await self.push(error)
            return
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        self.envelope.original_content = bytes(buf)
        self.envelope.content = self.envelope.original_content
        env.pop("esam_chunks", None)
        event(log, "smtp.bdat_last", session=self.sid, size=len(self.envelope.original_content))
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(codes.R250_OK if status is MISSING else status)

    def _bdat_refusal(self, env: dict[str, Any]) -> str | None:
        """Why this BDAT chunk is refused (its bytes are read anyway), or None."""
        assert self.session is not None and self.envelope is not None
        if not self.session.host_name:
            return "503 5.5.1 Send EHLO first"
        if self._auth_required and not self.session.authenticated:
            return codes.R530_AUTH_REQUIRED
        if "esam_bdat_failed" in env:
            return str(env["esam_bdat_failed"])
        if not self.envelope.mail_from:
            return codes.R503_BDAT_NEED_MAIL
        if not self.envelope.rcpt_tos:
            return codes.R554_NO_VALID_RCPT
        return None

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the body read in bulk (:mod:`esam_mail.smtp.dotdata`)."""
        if self.envelope is not None and "esam_chunks" in self.envelope.__dict__:
            await self.push(codes.R503_DATA_AFTER_BDAT)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        assert self.stream is not None  # set when the connection was made
        content, error = await read_dot_data(
            self.stream, max_size=self.data_size_limit, max_line=self.line_length_limit
        )
        if content is None:
            await self.push(
                "500 Line too long (see RFC5321 4.5.3.1.6)" if error == TOO_LONG else "552 Error: Too much mail data"
            )
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    # -- limits -------------------------------------------------------------------------
    def _count_commands(self) -> None:
        """Wrap every command method so each command counts exactly once (HELP,
        STARTTLS and QUIT included), with ``421 4.7.0`` and close past the limit."""
        limit = self.event_handler.limits.max_commands

        def counted(method: Callable[[str], Any]) -> Callable[[str], Any]:
            @functools.wraps(method)  # keeps aiosmtpd's @syntax data for HELP
            async def run(arg: str) -> None:
                self.commands += 1
                if self.commands > limit:
                    self.tracker.count("commands_over_limit")
                    await super(EsamSMTP, self).push(codes.R421_TOO_MANY_COMMANDS)
                    if self.transport is not None:
                        self.transport.close()
                    return
                await method(arg)

            return run

        self._smtp_methods = {name: counted(m) for name, m in self._smtp_methods.items()}

    def data_received(self, data: bytes) -> None:
        # Idle means no bytes at all: a slow but steady DATA upload is not idle
        # (aiosmtpd only re-arms the timer per command).
        if self._timeout_handle is not None:
            self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        """Idle timeout (RFC 5321 4.5.3.2): say 421 4.4.2, then close."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(codes.R421_TIMEOUT.encode() + b"\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()
        if transport is not None and transport.get_write_buffer_size():  # type: ignore[attr-defined]
            # close() waits for the replies to be read: a client that stopped reading
            # would keep the session (and its per-IP slot) for ever
            transport.abort()  # type: ignore[attr-defined]


_BDAT_ARGS = re.compile(r"^([0-9]{1,15})(?: +(LAST))?$", re.IGNORECASE)


def reverse_path(address: str | None) -> str:
    """aiosmtpd's MAIL FROM address -> the services' form (``""`` is the null path)."""
    return "" if not address or address == "<>" else address


def _loggable(address: str) -> str:
    """An envelope address for the log: printable, bounded (never the body)."""
    return "".join(c if c.isprintable() else "?" for c in address)[:320]


class Handler:
    """aiosmtpd hooks for one listener kind ("mx" or "submission")."""

    def __init__(
        self,
        delivery: DeliveryService,
        *,
        kind: str,
        limits: Limits,
        tracker: Tracker,
        authenticator: Authenticator | None = None,
        inbound_checks: Callable[[Transaction], Any] | None = None,
    ) -> None:
        self.delivery = delivery
        self.kind = kind
        self.limits = limits
        self.tracker = tracker
        self.authenticator = authenticator
        self.inbound_checks = inbound_checks
        if kind == "submission":
            # aiosmtpd discovers auth mechanisms by method name: bind them only here.
            self.auth_PLAIN = self._auth_plain
            self.auth_LOGIN = self._auth_login

    # -- EHLO ---------------------------------------------------------------------------
    async def handle_EHLO(
        self, server: EsamSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses if not (r.startswith("250-AUTH") and (self.kind != "submission" or r.strip() == "250-AUTH"))]
        out = [r for r in out if r != "250-HELP" and r != "250 HELP"]
        out.append("250-PIPELINING")
        out.append("250-CHUNKING")
        out.append("250-ENHANCEDSTATUSCODES")
        out.append("250 HELP")
        return out

    # -- AUTH ---------------------------------------------------------------------------
    async def _check(self, server: EsamSMTP, login: bytes, password: bytes) -> AuthResult:
        assert self.authenticator is not None
        try:
            principal = await self.authenticator.authenticate(
                login.decode("utf-8"), password.decode("utf-8"), peer=server.peer_ip, service="smtp"
            )
        except AccountDisabled as e:
            # RFC 4954 / RFC 5248 X.7.13 "User Account Disabled": the password was right
            self.tracker.count("auth_failed")
            await server.push(codes.R525_ACCOUNT_DISABLED.format(state=e.state))
            return AuthResult(success=False, handled=True)
        except (AuthError, UnicodeDecodeError):
            self.tracker.count("auth_failed")
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=principal)

    async def _auth_plain(self, server: EsamSMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = bytes(blob).split(b"\0")
        if len(parts) != 3:
            await server.push("501 5.5.2 Cannot split AUTH PLAIN value")
            return AuthResult(success=False, handled=True)
        authz, login, password = parts
        if authz and authz != login:
            return AuthResult(success=False, handled=False)
        return await self._check(server, login, password)

    async def _auth_login(self, server: EsamSMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await server.challenge_auth(SMTP.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await server.challenge_auth(SMTP.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check(server, bytes(login), bytes(password))

    # -- transaction --------------------------------------------------------------------
    def _principal(self, session: Session) -> Principal | None:
        data = session.auth_data if session.authenticated else None
        return data if isinstance(data, Principal) else None

    async def handle_MAIL(
        self, server: EsamSMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # aiosmtpd hands the null reverse-path (RFC 5321 4.5.5: DSNs, MDNs, auto-replies)
        # over as the string "<>"; the services speak "" for it.  The envelope keeps
        # "<>" because aiosmtpd tests ``envelope.mail_from`` for truth (503 on a nested
        # MAIL, "need MAIL" at RCPT); :func:`reverse_path` maps it back.
        try:
            self.delivery.check_sender(reverse_path(address), self._principal(session))
        except DeliveryError as e:
            self.tracker.count(f"mail_rejected_{e.code}")
            event(log, "smtp.mail_rejected", logging.INFO, session=server.sid, peer=server.peer_ip,
                  listener=server.listener, code=e.code, enhanced=e.enhanced, sender=_loggable(address))
            return f"{e.code} {e.enhanced} {e.public}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.R250_SENDER_OK

    async def handle_RCPT(
        self, server: EsamSMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if rcpt_options:
            return "555 5.5.4 RCPT parameters not supported"
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return codes.R452_TOO_MANY_RCPTS
        size = 0
        for opt in envelope.mail_options:
            if opt.upper().startswith("SIZE="):
                try:
                    size = int(opt[5:])
                except ValueError:
                    size = 0
        try:
            route = await self.delivery.check_recipient(address, principal=self._principal(session), size_hint=size)
        except DeliveryError as e:
            self.tracker.count(f"rcpt_rejected_{e.code}")
            event(log, "smtp.rcpt_rejected", logging.INFO, session=server.sid, peer=server.peer_ip,
                  listener=server.listener, code=e.code, enhanced=e.enhanced, rcpt=_loggable(address))
            return f"{e.code} {e.enhanced} {e.public}"
        envelope.rcpt_tos.append(address)
        routes: list[Route] = envelope.__dict__.setdefault("esam_routes", [])
        routes.append(route)
        return codes.R250_RCPT_OK

    async def handle_DATA(self, server: EsamSMTP, session: Session, envelope: Envelope) -> str:
        self.tracker.in_flight += 1
        self.tracker.idle.clear()
        try:
            return await self._data(server, session, envelope)
        except DeliveryError as e:
            self.tracker.count(f"messages_rejected_{e.code}")
            return f"{e.code} {e.enhanced} {e.public}"
        except Exception:
            log.exception("delivery failed")
            self.tracker.count("messages_rejected_451")
            return codes.R451_INTERNAL
        finally:
            self.tracker.in_flight -= 1
            if self.tracker.in_flight == 0:
                self.tracker.idle.set()

    async def _data(self, server: EsamSMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if b"\0" in data:
            # RFC 5322 2.3 / RFC 5321 4.1.1.4: no NUL in Internet mail.  Refused here rather
            # than stored, because IMAP may not send NUL outside literal8 (RFC 3501 4.3).
            self.tracker.count("messages_rejected_554")
            return codes.R554_NUL_BYTES
        principal = self._principal(session)
        if principal is not None:
            self.delivery.check_from_header(data, principal)
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        tx = Transaction(
            mail_from=reverse_path(envelope.mail_from),
            routes=list(envelope.__dict__.get("esam_routes", [])),
            data=data,
            principal=principal,
            peer=server.peer_ip,
            helo=session.host_name or "",
            tls=tls,
            session=server.sid,
        )
        if self.kind == "mx" and self.inbound_checks is not None:
            await self.inbound_checks(tx)
        await self.delivery.deliver(tx)
        self.tracker.count("messages_accepted")
        return f"{codes.R250_QUEUED} as {server.sid}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp session error: %s", type(error).__name__)
        return codes.R451_INTERNAL


@dataclass
class SMTPListeners:
    servers: list[asyncio.base_events.Server]
    tracker: Tracker

    def ports(self) -> dict[str, int]:
        out = {}
        for name, srv in zip(self.names, self.servers, strict=True):
            out[name] = srv.sockets[0].getsockname()[1]
        return out

    names: list[str] = field(default_factory=list)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight DATA finish (up to ``grace`` s), then close."""
        self.tracker.stopping = True
        for srv in self.servers:
            srv.close()
        if self.tracker.in_flight:
            try:
                await asyncio.wait_for(self.tracker.idle.wait(), grace)
            except TimeoutError:
                log.warning("shutdown: %d SMTP transactions still running", self.tracker.in_flight)
        for sess in list(self.tracker.sessions):
            if sess.transport is not None and not sess.transport.is_closing():
                sess.transport.write(codes.R421_SHUTTING_DOWN.encode() + b"\r\n")  # type: ignore[attr-defined]
                sess.transport.close()
        for srv in self.servers:
            await srv.wait_closed()


async def start_smtp(
    *,
    delivery: DeliveryService,
    authenticator: Authenticator,
    hostname: str,
    tls_context: ssl.SSLContext,
    limits: Limits,
    mx: tuple[str, int] | None,
    submission: tuple[str, int] | None,
    submissions: tuple[str, int] | None,
    inbound_checks: Callable[[Transaction], Any] | None = None,
    reuse_port: bool = False,
    tracker: Tracker | None = None,
) -> SMTPListeners:
    """Start the SMTP listeners on the running loop (port 0 allowed)."""
    loop = asyncio.get_running_loop()
    tracker = tracker or Tracker()
    tracker.idle.set()
    common: dict[str, Any] = dict(
        hostname=hostname,
        data_size_limit=limits.max_message_size,
        enable_SMTPUTF8=True,
        decode_data=False,
        timeout=limits.timeout,
        ident="esam_mail ESMTP",
        command_call_limit=None,
    )
    result = SMTPListeners(servers=[], tracker=tracker)

    def factory(kind: str, listener: str, **kw: Any) -> Callable[[], EsamSMTP]:
        handler = Handler(
            delivery, kind=kind, limits=limits, tracker=tracker,
            authenticator=authenticator if kind == "submission" else None,
            inbound_checks=inbound_checks,
        )
        def make() -> EsamSMTP:
            with warnings.catch_warnings():
                # 465 is implicit TLS: aiosmtpd cannot see that and warns about
                # auth_required without auth_require_tls (its issue #281).
                warnings.simplefilter("ignore")
                return EsamSMTP(handler, tracker=tracker, listener=listener, **common, **kw)

        return make

    if mx:
        srv = await loop.create_server(
            factory("mx", "mx", tls_context=tls_context, auth_exclude_mechanism=["LOGIN", "PLAIN"]),
            mx[0], mx[1], reuse_port=reuse_port,
        )
        result.servers.append(srv)
        result.names.append("smtp")
    if submission:
        srv = await loop.create_server(
            factory("submission", "submission", tls_context=tls_context, require_starttls=True,
                    auth_required=True, auth_require_tls=True),
            submission[0], submission[1], reuse_port=reuse_port,
        )
        result.servers.append(srv)
        result.names.append("submission")
    if submissions:
        srv = await loop.create_server(
            factory("submission", "submissions", auth_required=True, auth_require_tls=False),
            submissions[0], submissions[1], ssl=tls_context, reuse_port=reuse_port,
        )
        result.servers.append(srv)
        result.names.append("submissions")
    return result
