"""Composition root: config -> directory, store, services -> listeners.

The only module that knows every concrete class.  ``run(cfg)`` installs
Twisted's asyncio reactor on a fresh event loop (before anything imports
``twisted.internet.reactor``), starts every listener, writes an optional
ready file (JSON of bound ports, for tests and supervisors), and on
SIGTERM/SIGINT stops gracefully: no new connections, in-flight SMTP DATA and
queue deliveries finish, then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import glob
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esam_mail import fsio, metrics, tls
from esam_mail.config import Config, parse_hostport
from esam_mail.i18n import Message
from esam_mail.log import event

log = logging.getLogger(__name__)


def _addr(value: str) -> tuple[str, int] | None:
    return parse_hostport(value) if value else None


def dkim_key_files(cfg: Config) -> list[tuple[str, str, str]]:
    out = []
    for selector, algorithm in cfg.dkim.keys.items():
        found = sorted(glob.glob(str(cfg.data_dir / "dkim" / f"{glob.escape(selector)}.*key")))
        if found:
            out.append((selector, algorithm, found[0]))
    return out


@dataclass
class Services:
    """Everything built from the config, shared by the listeners and the CLI."""

    cfg: Config
    directory: Any
    store: Any
    notifier: Any
    hasher: Any
    authenticator: Any
    delivery: Any
    spool: Any = None
    queue: Any = None
    dkim: Any = None
    resolver: Any = None  # the process's one DNS resolver (services.mailflow.resolver.CachingResolver)
    extras: dict[str, Any] = field(default_factory=dict)
    own_notifier: bool = False  # build() made it, so close() closes it (its sockets)

    async def close(self) -> None:
        if self.own_notifier:
            self.notifier.close()  # idempotent; Server.stop may have closed it already
        self.authenticator.close()
        await self.directory.close()


def notify_dir(cfg: Config) -> Path:
    """Where the processes of one node meet for IDLE notifications.  Unix socket
    paths are limited to 107 bytes, so a deep data_dir falls back to /tmp."""
    import hashlib
    import tempfile

    d = cfg.data_dir / "run" / "notify"
    if len(str(d)) > 60:
        tag = hashlib.sha256(str(cfg.data_dir).encode()).hexdigest()[:12]
        d = Path(tempfile.gettempdir()) / f"esam-{tag}"
    return d


def build(cfg: Config, *, notifier: Any = None) -> Services:
    """Build the object graph (no sockets yet).  Call inside a running loop."""
    from esam_mail.directory.passwords import PasswordHasher
    from esam_mail.directory.sql import SqlDirectory
    from esam_mail.services.auth import DirectoryAuthenticator
    from esam_mail.services.authcache import node_cache
    from esam_mail.services.mailflow.delivery import DeliveryService
    from esam_mail.store.maildir import MaildirStore
    from esam_mail.store.notify import UnixDatagramNotifier
    from esam_mail.store.spool import Spool

    directory = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain, pool_size=cfg.directory.pool_size)
    hasher = PasswordHasher(cfg.auth.argon2_memory_kib, cfg.auth.argon2_time_cost, cfg.auth.argon2_parallelism)
    authenticator = DirectoryAuthenticator(
        directory, hasher, workers=cfg.auth.hash_workers,
        cache=node_cache(cfg.auth.cache_slots, ttl=cfg.auth.cache_seconds, max_age=cfg.auth.cache_max_seconds),
        max_failures=cfg.auth.max_failures, lock_seconds=cfg.auth.lock_seconds,
    )
    authenticator.on_failure.append(metrics.count_auth_failure)
    from esam_mail.services.accounts.account import login_recorder

    authenticator.on_success.append(login_recorder(directory))  # login history (IMAP, SMTP)
    from esam_mail.services.accounts.second_factor import SecondFactorService

    authenticator.second_factor = SecondFactorService(  # app passwords for IMAP/SMTP when TOTP is on
        directory, max_failures=cfg.auth.max_failures, lock_seconds=cfg.auth.lock_seconds)
    own_notifier = notifier is None
    if notifier is None and cfg.directory_url.startswith("postgresql"):
        from esam_mail.store.pgnotify import PgNotifier, asyncpg_dsn

        notifier = PgNotifier(asyncpg_dsn(cfg.directory_url))  # reaches every node (Server.start starts it)
    if notifier is None:
        notifier = UnixDatagramNotifier(notify_dir(cfg))
    quota = cfg.mail.default_quota_mb * 1024 * 1024 or None
    store = MaildirStore(cfg.store_path, default_quota=quota, fsync=cfg.store.fsync, notifier=notifier)
    spool = Spool(cfg.data_dir / "queue", fsync=cfg.store.fsync)
    dkim = None
    if cfg.dkim.sign:
        from esam_mail.services.mailflow.dkim import DkimSigner

        files = dkim_key_files(cfg)
        if files:
            dkim = DkimSigner.from_files(cfg.mail.domain, files)
        else:
            log.warning("DKIM signing is on but no keys exist; run `esam init`")
    from esam_mail.directory.aliases import AliasDirectory

    delivery = DeliveryService(
        directory, store, local_domains=cfg.local_domains, hostname=cfg.server.hostname,
        outbound=spool, aliases=AliasDirectory(directory),
        dkim_sign=dkim.sign if dkim else None,
    )
    svc = Services(cfg=cfg, directory=directory, store=store, notifier=notifier, hasher=hasher,
                   authenticator=authenticator, delivery=delivery, spool=spool, dkim=dkim,
                   resolver=build_resolver(cfg), own_notifier=own_notifier)
    svc.queue = build_queue(cfg, svc)
    delivery.kick_queue = svc.queue.kick
    if cfg.official.enabled:
        svc.extras["official"] = build_official(cfg, svc)
    if cfg.hybrid.enabled:  # e-mail -> paper gateway, authenticated subscribers only
        from esam_mail.services.hybrid.gateway import HybridMail

        svc.extras["hybrid"] = hybrid = HybridMail.from_config(cfg, directory, store)
        delivery.add_special(cfg.hybrid.gateway, "hybrid", hybrid.handle, require_auth=True)
    return svc


def build_official(cfg: Config, svc: Services) -> Any:
    """The official documents channel; without the operator key (no `esam init`) it
    exists but refuses every submission."""
    from esam_mail.errors import ConfigError
    from esam_mail.services.accounts.confirmation import verifier_from_config
    from esam_mail.services.official.channel import OfficialService
    from esam_mail.services.official.evidence import OperatorKey

    operator = None
    if cfg.operator_cert.exists() and cfg.operator_key.exists():
        operator = OperatorKey.load(cfg.operator_cert, cfg.operator_key)
    else:
        log.warning("official documents: no operator key at %s; run `esam init`", cfg.operator_key)
    try:
        verifier = verifier_from_config(cfg)
    except ConfigError:
        verifier = None
    return OfficialService(svc.directory, svc.delivery, svc.store, operator, verifier, cfg.official,
                           data_dir=cfg.data_dir, notifier=svc.notifier)


def build_queue(cfg: Config, svc: Services) -> Any:
    """The outbound queue runner: static transport map or MX, retries, RFC 3464 bounces."""
    from esam_mail.services.mailflow.queue import QueueRunner, RetryPolicy
    from esam_mail.services.mailflow.relay import Relay, TlsPolicy

    relay = Relay(
        local_hostname=cfg.server.hostname,
        resolver=svc.resolver,
        transport_map=cfg.outbound.transport,
        tls_policies={"*": TlsPolicy(required=True)} if cfg.outbound.require_tls else None,
        per_domain_limit=cfg.outbound.connections_per_domain,
    )

    async def bounce_deliver(mail_from: str, rcpt: str, data: bytes) -> None:
        await svc.delivery.deliver_bounce(rcpt, data)

    policy = RetryPolicy(base=cfg.outbound.retry_base, factor=2, cap=cfg.outbound.retry_max,
                         delay_warning=cfg.outbound.delay_warning, expiry=cfg.outbound.expire)
    from esam_mail.services.mailflow.observe import CountingDeliverer

    return QueueRunner(svc.spool, CountingDeliverer(relay), bounce_deliver=bounce_deliver,
                       reporting_mta=cfg.server.hostname, policy=policy)


def queue_kick_listener(queue: Any) -> Any:
    """A notifier callback that wakes the queue runner on ``QUEUE_KICK``."""
    from esam_mail.services.mailflow.queue import QUEUE_KICK

    def on_change(login: str, folder: str) -> None:
        if (login, folder) == QUEUE_KICK:
            queue.kick()

    return on_change


def build_resolver(cfg: Config) -> Any:
    """The process's one DNS resolver (cached; SPF, DKIM, DMARC and outbound MX share it)."""
    from esam_mail.services.mailflow.resolver import CachingResolver

    return CachingResolver(
        nameservers=cfg.dns.nameservers, timeout=cfg.dns.timeout, lifetime=cfg.inbound.dns_timeout,
        cache_entries=cfg.dns.cache_entries, servfail_ttl=cfg.dns.servfail_ttl,
    )


def build_inbound_policy(cfg: Config, *, resolver: Any = None) -> Any:
    """SPF/DKIM/DMARC at end of DATA on the MX, over ``resolver`` (the process's shared
    one; tests pass a static one)."""
    if not cfg.inbound.verify:
        return None
    from esam_mail.services.mailflow.inbound import InboundPolicy
    from esam_mail.services.mailflow.inbound_auth import InboundAuthenticator

    auth = InboundAuthenticator(resolver or build_resolver(cfg), cfg.server.hostname)
    return InboundPolicy(auth, dmarc_reject=cfg.inbound.dmarc_reject)


def init(cfg: Config) -> list[str]:
    """Idempotent: folders, schema (Alembic), dev TLS cert, DKIM keys.  Returns what it did, one
    :class:`~esam_mail.i18n.Message` (English ``str``) per line; ``esam init`` translates them."""
    from esam_mail.directory.sql import upgrade_schema_sync
    from esam_mail.services.mailflow.dkim import generate_key

    done: list[str] = []
    for d in (cfg.data_dir, cfg.store_path, cfg.data_dir / "queue", cfg.data_dir / "run",
              cfg.data_dir / "dkim", cfg.data_dir / "tls"):
        if not d.exists():
            d.mkdir(parents=True, mode=0o700)
            done.append(Message("created {path}", path=d))
        os.chmod(d, 0o700)
    upgrade_schema_sync(cfg.directory_url)
    done.append(Message("directory schema is at the latest migration"))
    if not cfg.tls.cert and tls.ensure_dev_certificate(cfg.tls_cert, cfg.tls_key, cfg.server.hostname):
        done.append(Message("made a self-signed TLS certificate {path}", path=cfg.tls_cert))
    from esam_mail.services.official.evidence import ensure_operator_key

    if ensure_operator_key(cfg.operator_cert, cfg.operator_key, hostname=cfg.server.hostname,
                           domain=cfg.mail.domain):
        done.append(Message("made the evidence signing key and certificate {path}", path=cfg.operator_cert))
    have = {s for s, _, _ in dkim_key_files(cfg)}
    for selector, algorithm in cfg.dkim.keys.items():
        if selector not in have:
            path, _ = generate_key(cfg.data_dir / "dkim", selector, algorithm)
            done.append(Message("made DKIM key {path} (publish it: {command})", path=path, command="esam dns"))
    return done


class Server:
    """All listeners of one process."""

    def __init__(self, cfg: Config, *, reuse_port: bool = False, resolver: Any = None,
                 roles: frozenset[str] = frozenset(("smtp", "imap", "http"))) -> None:
        self.cfg = cfg
        self.reuse_port = reuse_port
        # ``esam serve --roles``: this process runs only these front-ends; the smtp
        # role also owns the outbound queue and the mail-producing background jobs
        self.roles = roles
        self.resolver = resolver  # inbound SPF/DKIM/DMARC DNS; None = dnspython
        self.ports: dict[str, int] = {}
        self.services: Services | None = None
        self._smtp: Any = None
        self._imap: list[Any] = []
        self._http: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop_official: asyncio.Event | None = None

    @property
    def imap_listeners(self) -> list[Any]:
        """The running IMAP listeners (SIGHUP swaps their certificate)."""
        return self._imap

    async def start(self) -> dict[str, int]:
        from esam_mail.imap.server import start_imap

        cfg = self.cfg
        if not cfg.tls.cert:
            tls.ensure_dev_certificate(cfg.tls_cert, cfg.tls_key, cfg.server.hostname)
        ctx = self.tls_context = tls.server_context(cfg.tls_cert, cfg.tls_key, cfg.tls.min_version)
        svc = self.services = build(cfg)
        self._tasks.append(asyncio.ensure_future(metrics.watch_loop_lag()))  # issue 14 guard
        if hasattr(svc.notifier, "start"):
            await svc.notifier.start()  # PgNotifier: LISTEN before the first IDLE
        if "smtp" in self.roles:
            await self._start_smtp_role(svc, ctx)
        if "imap" in self.roles:
            imap_ports, self._imap = await start_imap(
                store=svc.store, authenticator=svc.authenticator, notifier=svc.notifier,
                cert=cfg.tls_cert, key=cfg.tls_key, hostname=cfg.server.hostname,
                imap=_addr(cfg.listen.imap), imaps=_addr(cfg.listen.imaps),
                max_literal_size=cfg.imap.max_literal_size, idle_timeout=cfg.imap.idle_timeout,
                max_connections_per_ip=cfg.imap.max_connections_per_ip, reuse_port=self.reuse_port,
                store_workers=cfg.imap.store_workers, spool_threshold=cfg.imap.spool_threshold,
            )
            self.ports.update(imap_ports)
        http = _addr(cfg.listen.http) if "http" in self.roles else None
        if http:
            from esam_mail.web.server import build_app, start_http

            self._http = await start_http(
                build_app(svc), http[0], http[1], reuse_port=self.reuse_port,
                grace=cfg.server.shutdown_grace, trusted_proxies=cfg.web.trusted_proxies,
                send_stall_timeout=cfg.web.send_stall_timeout,
            )
            self.ports["http"] = self._http.port
            from esam_mail.services.accounts.account import close_due_loop
            from esam_mail.web.account import account_service

            self._tasks.append(asyncio.ensure_future(close_due_loop(account_service(svc))))
        # Everything built so far (modules, config, engines, catalogues) lives as long as
        # the process: move it out of the collector's sight, so a full collection walks
        # only what requests created and does not stall the shared loop for 0.5 s.
        gc.collect()
        gc.freeze()
        # The loop shares the GIL with the mailbox pool's threads; a thread that holds it
        # keeps the loop (every session's next step) waiting up to the switch interval.
        # CPython's 5 ms made each step of every session queue behind cold-folder work on
        # the pool; at 1 ms the bench's IMAP sessions ran faster and with a shorter tail
        # (issue 20: 169-175 vs 143-157 sessions/s, p99 193-201 vs 225-226 ms, same run).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        event(log, "server.started", ports=",".join(f"{k}:{v}" for k, v in self.ports.items()))
        return self.ports

    async def _start_smtp_role(self, svc: Services, ctx: Any) -> None:
        """MX and submission listeners, the outbound queue and the mail-producing jobs."""
        from esam_mail.smtp.server import Limits, start_smtp

        cfg = self.cfg
        limits = Limits(
            max_message_size=cfg.smtp.max_message_size, max_recipients=cfg.smtp.max_recipients,
            timeout=cfg.smtp.timeout, max_commands=cfg.smtp.max_commands,
            max_connections_per_ip=cfg.smtp.max_connections_per_ip,
        )
        self._smtp = await start_smtp(
            delivery=svc.delivery, authenticator=svc.authenticator, hostname=cfg.server.hostname,
            tls_context=ctx, limits=limits, mx=_addr(cfg.listen.smtp),
            submission=_addr(cfg.listen.submission), submissions=_addr(cfg.listen.submissions),
            reuse_port=self.reuse_port, inbound_checks=build_inbound_policy(cfg, resolver=self.resolver or svc.resolver),
        )
        self._tasks.append(asyncio.ensure_future(svc.queue.run()))
        svc.notifier.subscribe(queue_kick_listener(svc.queue))  # `esam queue retry` wakes us
        official = svc.extras.get("official")
        if official is not None and official.operator is not None:
            # first reading of an official document: the store's change notification (IDLE's)
            svc.notifier.subscribe(official.on_change)
            self._stop_official = asyncio.Event()
            self._tasks.append(asyncio.ensure_future(official.run(self._stop_official)))
        if cfg.eds.recheck_interval > 0 and cfg.eds.trust_anchors:
            from esam_mail.services.accounts.eds_recheck import EdsRecheck

            recheck = EdsRecheck(
                svc.directory, svc.delivery.deliver_bounce, revocation=cfg.eds.revocation,
                crl_files=cfg.eds.crl_files, crl_urls=cfg.eds.crl_urls, ocsp_url=cfg.eds.ocsp_url,
                timeout=cfg.eds.network_timeout,
            )
            svc.extras["eds_recheck"] = recheck
            self._stop_official = self._stop_official or asyncio.Event()
            self._tasks.append(asyncio.ensure_future(recheck.run(self._stop_official, cfg.eds.recheck_interval)))
        self.ports.update(self._smtp.ports())

    async def stop(self) -> None:
        grace = self.cfg.server.shutdown_grace
        if self._smtp is not None:
            await self._smtp.stop(grace)
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.stop()
        for listener in self._imap:
            with contextlib.suppress(Exception):
                await listener.stop()
        if self.services is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.services.queue.stop(), grace)
        if self._stop_official is not None:
            self._stop_official.set()
        for t in self._tasks:
            t.cancel()
        if self.services is not None:
            self.services.notifier.close()
            await self.services.close()
        gc.unfreeze()  # see start(): the objects of this server may be collected now
        event(log, "server.stopped")

    async def reload(self) -> None:
        """SIGHUP: TLS certificates and the reloadable config keys (``esam_mail.reload``)."""
        from esam_mail.reload import reload_server

        await reload_server(self)


_reactor_loop: asyncio.AbstractEventLoop | None = None


def install_reactor(*, use_uvloop: bool = False) -> asyncio.AbstractEventLoop:
    """A new event loop with Twisted's asyncio reactor on it (idempotent).

    ``use_uvloop``: run on uvloop (faster asyncio transports for aiosmtpd; Twisted
    has accepted it since 21.7)."""
    import sys

    global _reactor_loop
    if _reactor_loop is not None:
        return _reactor_loop
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a Twisted reactor was installed before install_reactor(): import order bug")
    loop: asyncio.AbstractEventLoop
    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    _reactor_loop = loop
    return loop


GIL_SWITCH_INTERVAL = 0.001  # seconds; see Server.start


def run(cfg: Config, *, ready_file: str | None = None, reuse_port: bool = False,
        roles: frozenset[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT (only ``roles`` of smtp/imap/http; default all)."""
    loop = install_reactor(use_uvloop=cfg.server.uvloop)
    server = Server(cfg, reuse_port=reuse_port) if roles is None else Server(
        cfg, reuse_port=reuse_port, roles=roles)
    stop = asyncio.Event()

    async def main() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(server.reload()))
        event(log, "server.loop", loop=type(loop).__module__)
        ports = await server.start()
        if ready_file:
            # a watcher sees the whole file or none; no fsync: it is gone after a crash anyway
            fsio.atomic_write(ready_file, json.dumps({"pid": os.getpid(), "ports": ports}).encode(), fsync=False)
        await stop.wait()
        event(log, "server.stopping")
        await server.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
    return 0
