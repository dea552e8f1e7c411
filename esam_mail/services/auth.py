"""Authentication policy shared by SMTP submission and IMAP.

Front-ends parse SASL; this module decides.  ``Authenticator.authenticate``
returns a :class:`Principal` or raises :class:`~esam_mail.errors.AuthError`
(always the same vague error: unknown login, wrong password, suspended or
closed mailbox all look alike to the client).  The hash check runs off the
event loop in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from esam_mail.affinity import unpinned
from esam_mail.directory.models import utcnow
from esam_mail.directory.passwords import PasswordHasher
from esam_mail.directory.sql import LoginState, SqlDirectory
from esam_mail.errors import AccountDisabled, AuthError
from esam_mail.log import event
from esam_mail.services.authcache import SharedLoginCache


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated mailbox owner."""

    login: str  # normalized login, also the store's user key
    address: str  # primary e-mail address (login@domain)
    quota: int | None = None  # bytes; None = the store's default


class Authenticator(Protocol):
    async def authenticate(self, username: str, password: str, *, peer: str, service: str) -> Principal:
        """Check credentials.  ``username`` may be the login or the full address.

        Args:
            username: as typed by the user.
            password: the secret; never logged.
            peer: client IP, for throttling and audit.
            service: "imap" or "smtp".

        Raises:
            AuthError: on any failure (also when throttled).
        """
        ...


# --------------------------------------------------------------------------------------
# The implementation over the directory.


log = logging.getLogger(__name__)

_RECENT_MAX = 4096  # recent login states kept per process


class DirectoryAuthenticator:
    """Password logins against the directory.

    * The argon2 check runs in a bounded thread pool (``workers``), never on the loop.
    * A successful login is remembered in a :class:`SharedLoginCache` (shared by every
      worker of the node, renewed while the user is active, an HMAC of the password under
      a key held only in memory): a hit proves the password, the stored hash is never
      weakened, and a restart or a password change forgets everything.
    * Failures are counted per IP and per (login, IP) in the directory database,
      so every process and node sees them; past ``max_failures`` the key is locked
      for ``lock_seconds`` (growing with further failures).  The owner can still
      log in from another IP while one IP is locked.
    """

    def __init__(
        self,
        directory: SqlDirectory,
        hasher: PasswordHasher,
        *,
        workers: int = 4,
        cache_seconds: int = 60,
        cache: SharedLoginCache | None = None,
        max_failures: int = 10,
        lock_seconds: int = 300,
        failure_delay: float = 0.2,
        state_seconds: float = 1.0,
    ) -> None:
        self.directory = directory
        self.hasher = hasher
        # argon2id holds no GIL: its threads may use every CPU of a pinned worker
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pwcheck",
                                       initializer=unpinned)
        self.cache = cache if cache is not None else SharedLoginCache(4096, ttl=cache_seconds)
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.failure_delay = failure_delay
        self.on_failure: list[object] = []  # metrics hooks: callables(service)
        # after a full password check (not a cache hit): callables(principal, peer, service)
        # With a second factor on (services/accounts/second_factor.py), IMAP and SMTP take app
        # passwords only: the main password alone no longer opens the mailbox.
        self.second_factor: Any = None
        self.on_success: list[Callable[[Principal, str, str], None]] = []
        # The directory's answer for a recent successful login (mailbox row, second factor,
        # failure counters), per (login, peer), reused for ``state_seconds``: the read
        # (SQLAlchemy + aiosqlite thread hops) was the largest part of a cached login
        # (issue 20).  Only a login that also hits the shared password cache uses it, so:
        # * a password changed or a mailbox suspended through the services (any worker of
        #   the node) is forgotten in the shared cache at once: the next login reads afresh;
        # * a change that bypasses them (another node, a direct SQL edit) is seen within
        #   ``state_seconds``; a wrong password, a failure or a lock always reads afresh.
        self.state_seconds = state_seconds
        self._recent: dict[tuple[str, str], tuple[float, LoginState]] = {}

    async def authenticate(self, username: str, password: str, *, peer: str, service: str) -> Principal:
        login = self.directory.login_of(username)
        # ip:*          every failure from one address (password spraying)
        # login:*|ip:*  one account from one address (guessing) -> lock
        # login:*       one account from everywhere: growing delay only, never a lock,
        #               so the owner can still log in from another address
        keys = [f"ip:{peer}", f"login:{login}|ip:{peer}", f"login:{login}"]
        now = time.monotonic()
        fast = self._recent_login(login, peer, password, service, now)
        if fast is not None:
            return fast
        # one read for the mailbox, its second factor and the counters (was three)
        state = await self.directory.login_state(login, keys)
        if self._is_locked(state.failures, keys[:2]):
            event(log, "auth.locked", logging.WARNING, user=login, peer=peer, service=service)
            raise AuthError("locked")
        rec = state.record
        had_failures = any(k in state.failures for k in keys[1:])
        if rec is not None and rec.state != "active" and password:
            # the holder of a suspended (closed, held) mailbox is told why, once the password
            # proves it is the holder: a guesser learns nothing a wrong password would not say
            ok, _ = await asyncio.get_running_loop().run_in_executor(
                self.pool, self.hasher.verify, password, rec.password_hash
            )
            if not ok:
                await self._fail(keys, login, peer, service)
                raise AuthError("bad credentials")
            event(log, "auth.disabled", user=rec.login_norm, peer=peer, service=service, state=rec.state)
            raise AccountDisabled(rec.state)
        if rec is None or rec.state != "active" or not password:
            if rec is None:  # same cost as a real check, so timing does not reveal logins
                await asyncio.get_running_loop().run_in_executor(self.pool, self.hasher.hash, password or "x")
            await self._fail(keys, login, peer, service)
            raise AuthError("bad credentials")
        if service != "web" and self.second_factor is not None and state.second_factor:
            if not await self.second_factor.check_app_password(rec.id, password):
                await self._fail(keys, login, peer, service)
                raise AuthError("bad credentials")
            if had_failures:
                await self.directory.clear_failures(keys[1:])
            event(log, "auth.ok", user=rec.login_norm, peer=peer, service=service, app_password=True)
            principal = Principal(login=rec.login_norm, address=rec.address, quota=rec.quota_bytes)
            for hook in self.on_success:
                hook(principal, peer, service)
            return principal
        if self.cache.check(rec.login_norm, password, rec.password_hash, now):
            if not had_failures:
                self._remember(login, peer, state, now)
            return Principal(login=rec.login_norm, address=rec.address, quota=rec.quota_bytes)
        ok, new_hash = await asyncio.get_running_loop().run_in_executor(
            self.pool, self.hasher.verify, password, rec.password_hash
        )
        if not ok:
            await self._fail(keys, login, peer, service)
            raise AuthError("bad credentials")
        stored = rec.password_hash
        if new_hash:
            await self.directory.set_password_hash(rec.id, new_hash, rehash=True)
            stored = new_hash
            event(log, "auth.rehashed", user=rec.login_norm)
        self.cache.put(rec.login_norm, password, stored, now)
        if not had_failures and not new_hash:
            self._remember(login, peer, state, now)
        if had_failures:
            await self.directory.clear_failures(keys[1:])  # the per-IP count stays
        event(log, "auth.ok", user=rec.login_norm, peer=peer, service=service)
        principal = Principal(login=rec.login_norm, address=rec.address, quota=rec.quota_bytes)
        for hook in self.on_success:
            hook(principal, peer, service)
        return principal

    def _recent_login(self, login: str, peer: str, password: str, service: str,
                      now: float) -> Principal | None:
        """The principal of a login proved moments ago from this peer, without a directory
        read; None when the slow path must decide."""
        hit = self._recent.get((login, peer))
        if hit is None:
            return None
        seen, state = hit
        rec = state.record
        if now - seen >= self.state_seconds or rec is None or not password:
            del self._recent[(login, peer)]
            return None
        if state.second_factor and self.second_factor is not None and service != "web":
            return None
        if not self.cache.check(rec.login_norm, password, rec.password_hash, now):
            return None  # another password, or forgotten (changed, suspended) meanwhile
        return Principal(login=rec.login_norm, address=rec.address, quota=rec.quota_bytes)

    def _remember(self, login: str, peer: str, state: LoginState, now: float) -> None:
        if self.state_seconds <= 0:
            return
        rec = state.record
        if rec is None or rec.state != "active" or state.failures:
            return
        if len(self._recent) >= _RECENT_MAX:  # bounded: drop the expired, else the oldest
            for key in [k for k, (t, _) in self._recent.items() if now - t >= self.state_seconds]:
                del self._recent[key]
            if len(self._recent) >= _RECENT_MAX:
                del self._recent[next(iter(self._recent))]
        self._recent[(login, peer)] = (now, state)

    def reconfigure(self, *, max_failures: int, lock_seconds: int, cache_seconds: float) -> None:
        """New limits and cache lifetime for the next logins (SIGHUP)."""
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.cache.set_ttl(cache_seconds)
        self._recent.clear()

    def forget(self, login: str) -> None:
        """Drop the cached login (password change, suspension): in every worker of the node,
        as the shared password cache no longer proves it."""
        self.cache.forget(login)
        for key in [k for k in self._recent if k[0] == login]:
            del self._recent[key]

    @staticmethod
    def _is_locked(rows: Mapping[str, Any], keys: list[str]) -> bool:
        now = utcnow()
        for r in (rows[k] for k in keys if k in rows):
            until = r.locked_until
            if until is not None:
                if until.tzinfo is None:
                    until = until.replace(tzinfo=now.tzinfo)
                if until > now:
                    return True
        return False


    async def _fail(self, keys: list[str], login: str, peer: str, service: str) -> None:
        self._recent.pop((login, peer), None)
        # an address shared by many users (NAT at a post office) gets more room
        await self.directory.record_failure(keys[:1], self.max_failures * 5, self.lock_seconds)
        await self.directory.record_failure(keys[1:2], self.max_failures, self.lock_seconds)
        await self.directory.record_failure(keys[2:], 10**9, self.lock_seconds)  # counted, never locks
        event(log, "auth.failed", logging.WARNING, user=login, peer=peer, service=service)
        for hook in self.on_failure:
            hook(service)  # type: ignore[operator]
        rows = await self.directory.failures(keys)
        for key, limit in ((keys[0], self.max_failures * 5), (keys[1], self.max_failures)):
            row = rows.get(key)
            if row is not None and row.count % limit == 0:
                await self.directory.audit("system", "auth", "auth.lock", key.partition("|")[0][:320],
                                           "denied", peer=peer, service=service, failures=row.count)
        # growing delay, capped, so online guessing is slow even before the lock
        n = max((r.count for r in rows.values()), default=1)
        await asyncio.sleep(min(self.failure_delay * n, 3.0))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
