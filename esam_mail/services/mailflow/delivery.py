"""Accepting mail: recipient routing, sender policy and durable delivery.

A transaction is: ``check_sender`` at MAIL, ``check_recipient`` at each RCPT
(-> a :class:`Route`), then ``deliver`` at end of DATA.  ``deliver`` returns
only when every local copy is in its Maildir on stable storage and every
remote copy is in the fsynced outbound spool: that is what a 250 means.

Routing rules (R9, R12):
* local domains: the recipient must be an *active* mailbox with room (452 4.2.2);
  an unknown one is 550 5.1.1, a suspended or closed one 550 5.2.1 and a held one
  (registration under manual check) 450 4.2.1 (:func:`disabled_mailbox`);
* remote domains: only for an authenticated principal (554 5.7.1 otherwise:
  no open relay, ever), into the spool;
* special local addresses (the hybrid gateway) route to their service.

Errors are :class:`~esam_mail.errors.DeliveryError` with code, enhanced code
and a public text; the SMTP front-end only copies them onto the wire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from esam_mail.directory.sql import MailboxRecord, SqlDirectory, normalize_address
from esam_mail.errors import DeliveryError, QuotaExceeded
from esam_mail.log import event
from esam_mail.services.auth import Principal

log = logging.getLogger(__name__)

_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f]+@[A-Za-z0-9\x80-\U0010ffff.-]+$")


def disabled_mailbox(state: str) -> DeliveryError:
    """The RCPT reply for an issued address that does not take mail now (RFC 3463 X.2.1).

    The address exists and is never reissued, so "no such user" (5.1.1) would be a lie
    that makes senders drop it from their address books:

    * ``held`` (registration waiting for the manual registry check, soon active or
      refused): ``450 4.2.1``, the sender's MTA retries as for any temporary failure;
    * ``suspended`` and ``closed``: ``550 5.2.1``, the sender gets a bounce now.
    """
    if state == "held":
        return DeliveryError(450, "4.2.1", "Mailbox temporarily disabled, try again later")
    return DeliveryError(550, "5.2.1", "Mailbox disabled, not accepting messages")


class QuotaView(Protocol):
    @property
    def ok(self) -> bool: ...


class LocalStore(Protocol):
    def deliver_many(
        self, logins: Sequence[str], data: bytes, *, quotas: Mapping[str, int | None] | None = None
    ) -> Mapping[str, str]: ...

    def deliver_each(
        self, logins: Sequence[str], data: bytes, *, quotas: Mapping[str, int | None] | None = None
    ) -> Mapping[str, str | Exception]: ...

    def deliver_batch(
        self, jobs: Sequence[tuple[Sequence[str], bytes, Mapping[str, int | None] | None]]
    ) -> Sequence[Mapping[str, str | Exception] | OSError]: ...

    def quota_state(self, login: str, incoming_size: int = 0, quota: int | None = None) -> QuotaView: ...


class GroupCommit:
    """Local deliveries written together (group commit), each still acknowledged only once
    its own copy is on stable storage.

    A delivery that arrives while a batch is being written waits for the next batch, which
    starts as soon as the current one ends; so with one delivery at a time nothing waits
    longer than before, and with many each batch shares its fsyncs (one per message file,
    one per new/ directory, but the journal commits and the thread hop are shared: see
    ``MaildirStore.deliver_batch``).  A batch is at most ``max_batch`` messages.
    """

    max_batch = 32

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self._pending: list[tuple[tuple[Sequence[str], bytes, Mapping[str, int | None]], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def deliver_each(
        self, logins: Sequence[str], data: bytes, quotas: Mapping[str, int | None]
    ) -> Mapping[str, str | Exception]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(((logins, data, quotas), fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        result = await fut
        if isinstance(result, OSError):
            raise result
        return result

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                results = await asyncio.to_thread(self.store.deliver_batch, [job for job, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting delivery gets it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():  # done: its SMTP session went away meanwhile
                    fut.set_result(result)


class Outbound(Protocol):
    def enqueue(self, mail_from: str, rcpts: list[str], data: bytes) -> str: ...


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "local" | "remote" | "special" | "alias"
    address: str  # as given (case kept)
    login: str | None = None
    domain: str = ""
    service: str | None = None
    quota: int | None = None  # bytes; None = the store's default
    targets: tuple[Route, ...] = ()  # "alias": where it delivers (local/remote routes)


class AliasLookup(Protocol):
    async def resolve(self, name: str) -> tuple[str, ...] | None:
        """Targets (logins, or full remote addresses) of the alias ``name``, or None."""
        ...


def expand(routes: Sequence[Route]) -> list[Route]:
    """Alias routes replaced by their targets (one level: aliases never point at aliases)."""
    return [t for r in routes for t in (r.targets if r.kind == "alias" else (r,))]


@dataclass(slots=True)
class Transaction:
    mail_from: str
    routes: list[Route]
    data: bytes
    principal: Principal | None
    peer: str
    helo: str
    tls: bool
    session: str
    extra_headers: list[bytes] = field(default_factory=list)


SpecialHandler = Callable[[Transaction, list[Route]], Awaitable[None]]


def split_address(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower()


class DeliveryService:
    def __init__(
        self,
        directory: SqlDirectory,
        store: LocalStore,
        *,
        local_domains: list[str],
        hostname: str,
        outbound: Outbound | None = None,
        dkim_sign: Callable[[bytes], bytes] | None = None,
        kick_queue: Callable[[], None] | None = None,
        aliases: AliasLookup | None = None,
    ) -> None:
        self.directory = directory
        self.store = store
        self.local_domains = {d.lower() for d in local_domains}
        self.primary_domain = local_domains[0].lower()
        self.hostname = hostname
        self.outbound = outbound
        self.dkim_sign = dkim_sign
        self.kick_queue = kick_queue
        self.aliases = aliases
        self.commits = GroupCommit(store)
        self._alias_cache: dict[str, tuple[tuple[str, ...] | None, float]] = {}
        self.special: dict[str, tuple[str, SpecialHandler]] = {}
        self._rcpt_cache: dict[str, tuple[MailboxRecord, float]] = {}
        self._rcpt_due: set[str] = set()  # cached recipients to look up again soon
        self._rcpt_refresher: asyncio.Task[None] | None = None
        self.special_auth_only: set[str] = set()

    def add_special(
        self, local_part: str, service: str, handler: SpecialHandler, *, require_auth: bool = False
    ) -> None:
        """Route ``local_part@<primary domain>`` to a service (e.g. the hybrid gateway).

        With ``require_auth`` only authenticated subscribers may use it; anyone else
        gets 550 5.7.1 at RCPT.
        """
        key = f"{local_part.lower()}@{self.primary_domain}"
        self.special[key] = (service, handler)
        if require_auth:
            self.special_auth_only.add(key)

    # -- MAIL FROM ---------------------------------------------------------------------
    def check_sender(self, mail_from: str, principal: Principal | None) -> None:
        if mail_from and not _ADDR.match(mail_from):
            raise DeliveryError(553, "5.1.7", "Bad sender address syntax")
        if principal is not None and normalize_address(mail_from) != principal.address:
            raise DeliveryError(553, "5.7.1", "Sender address does not belong to you")

    def check_from_header(self, data: bytes, principal: Principal) -> None:
        """Submission: every From: address must be the authenticated mailbox's (R12)."""
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        values = []
        current: bytes | None = None
        for line in head.splitlines():
            if line[:1] in (b" ", b"\t") and current is not None:
                current += b" " + line.strip()
                continue
            if current is not None:
                values.append(current)
                current = None
            if line[:5].lower() == b"from:":
                current = line[5:].strip()
        if current is not None:
            values.append(current)
        if len(values) != 1:
            raise DeliveryError(553, "5.7.1", "Exactly one From: header is required")
        addrs = email.utils.getaddresses([values[0].decode("utf-8", "replace")])
        if not addrs or any(normalize_address(a) != principal.address for _, a in addrs):
            raise DeliveryError(553, "5.7.1", "From: address does not belong to you")

    # -- RCPT TO -----------------------------------------------------------------------
    async def check_recipient(
        self, address: str, *, principal: Principal | None, size_hint: int = 0
    ) -> Route:
        if not _ADDR.match(address):
            raise DeliveryError(553, "5.1.3", "Bad recipient address syntax")
        local, domain = split_address(address)
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise DeliveryError(553, "5.1.2", "Bad recipient domain") from None
        if domain not in self.local_domains:
            if principal is None:
                raise DeliveryError(554, "5.7.1", "Relay access denied")
            if self.outbound is None:
                raise DeliveryError(550, "5.7.1", "Outbound mail is not enabled")
            return Route("remote", address, domain=domain)
        key = normalize_address(f"{local}@{self.primary_domain}")
        if key in self.special:
            service, _ = self.special[key]
            if principal is None and key in self.special_auth_only:
                raise DeliveryError(550, "5.7.1", "This address accepts mail only from authenticated subscribers")
            return Route("special", address, domain=domain, service=service)
        login = normalize_address(f"{local}@{domain}").rpartition("@")[0]
        rec = await self._recipient(login)
        if rec is None:
            targets = await self._alias(login)
            if targets is not None:
                return await self._alias_route(address, domain, targets, size_hint)
            raise DeliveryError(550, "5.1.1", "No such user here")
        if rec.state != "active":
            raise disabled_mailbox(rec.state)
        # cheap: the store keeps a cached usage figure (maildirsize), no directory walk
        if not self.store.quota_state(rec.login_norm, size_hint, rec.quota_bytes).ok:
            raise DeliveryError(452, "4.2.2", "Mailbox full")
        return Route("local", address, login=rec.login_norm, domain=domain, quota=rec.quota_bytes)

    #: Seconds a directory answer for RCPT is reused by this process.  A suspended or
    #: closed mailbox is refused at RCPT at most this long after the change; only active
    #: mailboxes are cached, so a new, approved or resumed mailbox receives mail at once.
    #: Recipients that keep receiving are looked up again before their answer expires, all
    #: of them in one query (:meth:`_refresh_recipients`), not one query each per period.
    recipient_cache_seconds = 2.0

    async def _recipient(self, login: str) -> MailboxRecord | None:
        """The directory record for RCPT, through a short per-process cache."""
        now = time.monotonic()
        cache = self._rcpt_cache
        hit = cache.get(login)
        if hit is not None and hit[1] > now:
            if hit[1] - now < self.recipient_cache_seconds * 0.75:  # a quarter of its life gone
                self._rcpt_due.add(login)
                if self._rcpt_refresher is None or self._rcpt_refresher.done():
                    self._rcpt_refresher = asyncio.create_task(self._refresh_recipients())
            return hit[0]
        rec = await self.directory.get(login)
        self._remember(login, rec, now)
        return rec

    def _remember(self, login: str, rec: MailboxRecord | None, asked_at: float) -> None:
        cache = self._rcpt_cache
        if rec is not None and rec.state == "active" and self.recipient_cache_seconds > 0:
            if len(cache) > 10_000:
                cache.clear()
            cache[login] = (rec, asked_at + self.recipient_cache_seconds)
        else:
            cache.pop(login, None)

    async def _refresh_recipients(self) -> None:
        """Look the recipients that came due up again, in one query.  Waits a quarter of the
        lifetime first so that more come due; answers are dated from the query, so the
        lifetime guarantee above holds."""
        await asyncio.sleep(self.recipient_cache_seconds / 4)
        due, self._rcpt_due = self._rcpt_due, set()
        asked_at = time.monotonic()
        try:
            recs = await self.directory.get_many(due)
        except Exception:  # the entries expire as usual and the next RCPT asks itself
            log.warning("recipient refresh failed", exc_info=True)
            return
        for login in due:
            self._remember(login, recs.get(login), asked_at)

    async def _alias(self, name: str) -> tuple[str, ...] | None:
        """Alias targets through a short per-process cache (hits and misses, same TTL)."""
        if self.aliases is None:
            return None
        now = time.monotonic()
        hit = self._alias_cache.get(name)
        if hit is not None and hit[1] > now:
            return hit[0]
        targets = await self.aliases.resolve(name)
        if self.recipient_cache_seconds > 0:
            if len(self._alias_cache) > 10_000:
                self._alias_cache.clear()
            self._alias_cache[name] = (targets, now + self.recipient_cache_seconds)
        return targets

    async def _alias_route(self, address: str, domain: str, targets: tuple[str, ...], size_hint: int) -> Route:
        """RCPT to an alias: a route per deliverable target (active mailboxes with room,
        remote addresses when outbound mail is on).  Refused only if none is left."""
        routes: list[Route] = []
        full = False
        disabled: str | None = None
        for target in targets:
            if "@" in target:
                if self.outbound is not None:
                    routes.append(Route("remote", target, domain=target.rpartition("@")[2]))
                continue
            rec = await self._recipient(target)
            if rec is None or rec.state != "active":
                disabled = disabled or (rec.state if rec is not None else "closed")
                continue
            if not self.store.quota_state(rec.login_norm, size_hint, rec.quota_bytes).ok:
                full = True
                continue
            routes.append(Route("local", address, login=rec.login_norm, domain=domain, quota=rec.quota_bytes))
        if not routes:
            if full:
                raise DeliveryError(452, "4.2.2", "Mailbox full")
            raise disabled_mailbox(disabled or "closed")
        return Route("alias", address, domain=domain, targets=tuple(routes))

    # -- DATA --------------------------------------------------------------------------
    def received_header(self, tx: Transaction, for_addr: str | None) -> bytes:
        proto = "ESMTP"
        if tx.tls:
            proto += "S"
        if tx.principal is not None:
            proto += "A"
        date = email.utils.format_datetime(dt.datetime.now(dt.UTC).astimezone())
        helo = re.sub(r"[^\x21-\x7e]", "?", tx.helo or "unknown")[:255]
        for_part = f"\r\n\tfor <{for_addr}>" if for_addr else ""
        return (
            f"Received: from {helo} ([{tx.peer}])\r\n\tby {self.hostname} (esam_mail) "
            f"with {proto} id {tx.session}{for_part};\r\n\t{date}\r\n"
        ).encode("utf-8", "surrogateescape")

    async def deliver_bounce(self, rcpt: str, data: bytes) -> None:
        """Deliver a DSN: into a local INBOX, or out again with a null reverse-path
        (which is never bounced itself, so no loops)."""
        local, domain = split_address(rcpt)
        if domain in self.local_domains:
            rec = await self.directory.get(local) if local else None
            if rec is None and local:  # a bounce to postmaster@ and the like: the alias's mailboxes
                recs = [await self.directory.get(t) for t in await self._alias(normalize_address(rcpt).rpartition("@")[0]) or ()
                        if "@" not in t]
            else:
                recs = [rec]
            quotas = {r.login_norm: r.quota_bytes for r in recs if r is not None and r.state == "active"}
            if quotas:
                await asyncio.to_thread(self.store.deliver_each, sorted(quotas), data, quotas=quotas)
            return
        if self.outbound is not None:
            await asyncio.to_thread(self.outbound.enqueue, "", [rcpt], data)
            if self.kick_queue:
                self.kick_queue()

    async def bounce(self, tx: Transaction, failures: list[tuple[str, Exception]]) -> None:
        if not tx.mail_from:
            return  # never bounce a bounce
        import time

        from esam_mail.services.mailflow.queue import DsnRecipient, build_dsn

        rcpts = [
            DsnRecipient(address=a, action="failed",
                         status="5.2.2" if isinstance(e, QuotaExceeded) else "4.3.0",
                         diagnostic="552 5.2.2 Mailbox full" if isinstance(e, QuotaExceeded)
                         else "451 4.3.0 Local delivery failed")
            for a, e in failures
        ]
        now = time.time()
        dsn = build_dsn(reporting_mta=self.hostname, original_sender=tx.mail_from, recipients=rcpts,
                        original=tx.data, arrival_date=now, now=now)
        await self.deliver_bounce(tx.mail_from, dsn)

    async def deliver(self, tx: Transaction) -> dict[str, str]:
        """Deliver durably to every route or raise DeliveryError (nothing half-done
        is acknowledged: local copies are written before the remote spool entry,
        and a failure in either makes the whole transaction fail).

        Returns:
            login -> Maildir key of every local copy written (the official channel
            follows that message to its first reading).
        """
        data = tx.data
        if tx.principal is not None and self.dkim_sign is not None:
            data = await asyncio.to_thread(self.dkim_sign, data)  # signed once, at submission
        trace = b"".join(tx.extra_headers)
        single = tx.routes[0].address if len(tx.routes) == 1 else None
        stamped = self.received_header(tx, single) + trace + data
        routes = expand(tx.routes)
        quotas = {r.login: r.quota for r in routes if r.kind == "local" and r.login}
        local = list(quotas)
        remote = list(dict.fromkeys(r.address for r in routes if r.kind == "remote"))
        special = [r for r in routes if r.kind == "special"]
        written: dict[str, str] = {}
        if local:
            body = b"Return-Path: <" + tx.mail_from.encode("utf-8", "surrogateescape") + b">\r\n" + stamped
            results = await self.commits.deliver_each(sorted(local), body, quotas)
            failed = {login: err for login, err in results.items() if not isinstance(err, str)}
            written = {login: key for login, key in results.items() if isinstance(key, str)}
            if failed and len(failed) == len(results) and not remote and not special:
                # nobody got it: refuse the whole message (the client keeps it)
                if all(isinstance(e, QuotaExceeded) for e in failed.values()):
                    raise DeliveryError(552, "5.2.2", "Mailbox full")
                raise DeliveryError(451, "4.3.0", "Local delivery failed, try again later")
            if failed:
                # some recipients have it already: accept, and tell the sender about the rest
                # (a 4xx now would make the client resend to everyone: duplicates)
                addr = {r.login: r.address for r in routes if r.kind == "local"}
                await self.bounce(tx, [(addr[lg], err) for lg, err in failed.items()])
        if remote:
            assert self.outbound is not None
            await asyncio.to_thread(self.outbound.enqueue, tx.mail_from, remote, stamped)
            if self.kick_queue:
                self.kick_queue()
        for svc in {r.service for r in special}:
            _, handler = next(v for k, v in self.special.items() if v[0] == svc)
            await handler(tx, [r for r in special if r.service == svc])
        event(
            log,
            "delivery.accepted",
            local=len(local),
            remote=len(remote),
            special=len(special),
            size=len(tx.data),
            user=tx.principal.login if tx.principal else "-",
        )
        return written
