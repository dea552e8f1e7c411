"""Password logins: cache, rehash on login, brute-force counters shared through the database."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from passlib.hash import sha512_crypt

from esam_mail.directory.passwords import PasswordHasher
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import AccountDisabled, AuthError
from esam_mail.services.auth import DirectoryAuthenticator
from tests.conftest import migrate_directory

HASHER = PasswordHasher(memory_kib=1024, time_cost=1, parallelism=1)


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}"
    migrate_directory(u)
    return u


_MADE: list[DirectoryAuthenticator] = []


def make(url: str, **kw: object) -> DirectoryAuthenticator:
    d = SqlDirectory(url, domain="esam.test")
    return made(DirectoryAuthenticator(d, HASHER, workers=2, failure_delay=0.0, **kw))  # type: ignore[arg-type]


def made(a: DirectoryAuthenticator) -> DirectoryAuthenticator:
    _MADE.append(a)
    return a


def run(coro: Any) -> Any:
    """asyncio.run, closing every authenticator (and its directory) made inside before the
    loop ends: a directory left open kept aiosqlite worker threads that raised "Event loop is
    closed" later, in whatever test ran then (CI: test_cli_args, next in this worker)."""

    async def guarded() -> Any:
        try:
            return await coro
        finally:
            while _MADE:
                a = _MADE.pop()
                a.close()
                await a.directory.close()

    return asyncio.run(guarded())


async def add(url: str, login: str, stored: str) -> None:
    d = SqlDirectory(url, domain="esam.test")
    await d.create_mailbox(login, stored)
    await d.close()


def test_login_by_login_or_address(url: str) -> None:
    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url)
        p = await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        assert p.address == "alice@esam.test"
        p = await a.authenticate("Alice@ESAM.test", "pw-alice-1", peer="10.0.0.1", service="imap")
        assert p.login == "alice"
        with pytest.raises(AuthError):
            await a.authenticate("alice", "wrong", peer="10.0.0.1", service="imap")
        with pytest.raises(AuthError):
            await a.authenticate("nobody", "x", peer="10.0.0.1", service="imap")

    run(go())


def test_cache_hit_still_proves_the_password(url: str) -> None:
    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url, cache_seconds=60)
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        rec = await a.directory.get("alice")
        assert rec is not None and a.cache.check("alice", "pw-alice-1", rec.password_hash, time.monotonic())
        with pytest.raises(AuthError):
            await a.authenticate("alice", "pw-alice-2", peer="10.0.0.1", service="imap")
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")

    run(go())


def test_legacy_hash_is_rehashed_to_argon2id_on_login(url: str) -> None:
    async def go() -> None:
        await add(url, "old", "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash("legacy-pw"))  # glibc default rounds: fast
        a = make(url)
        await a.authenticate("old", "legacy-pw", peer="10.0.0.1", service="imap")
        rec = await a.directory.get("old")
        assert rec is not None and rec.password_hash.startswith("$argon2id$")
        await a.authenticate("old", "legacy-pw", peer="10.0.0.1", service="smtp")

    run(go())


def test_brute_force_locks_the_ip_not_the_owner(url: str) -> None:
    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        attacker = make(url, max_failures=3, cache_seconds=0)
        for _ in range(3):
            with pytest.raises(AuthError):
                await attacker.authenticate("alice", "guess", peer="203.0.113.9", service="imap")
        # locked now: even the right password fails from that address ...
        with pytest.raises(AuthError):
            await attacker.authenticate("alice", "pw-alice-1", peer="203.0.113.9", service="imap")
        # ... and from another process sharing the database (a second authenticator)
        other_process = make(url, max_failures=3, cache_seconds=0)
        with pytest.raises(AuthError):
            await other_process.authenticate("alice", "pw-alice-1", peer="203.0.113.9", service="smtp")
        # the owner logs in from home
        p = await other_process.authenticate("alice", "pw-alice-1", peer="198.51.100.7", service="imap")
        assert p.login == "alice"
        events = await attacker.directory.audit_list(action="auth.lock")
        assert events and events[0].outcome == "denied"

    run(go())


def test_suspended_mailbox_cannot_log_in(url: str) -> None:
    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url)
        await a.directory.set_state("alice", "suspended", actor=("sysadmin", "t"))
        with pytest.raises(AuthError):
            await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")

    run(go())


def test_cache_is_shared_with_forked_workers_and_skips_the_slow_check(url: str) -> None:
    """A login proved in one worker is a cache hit in another (the supervisor makes the
    table before it forks); the slow hash check is not called for it."""
    from esam_mail.services.authcache import SharedLoginCache

    cache = SharedLoginCache(64, ttl=60)

    async def first() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))

    run(first())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # "worker 1": proves the password the slow way
        code = 1
        try:
            a = make(url, cache=cache)
            run(a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.close(r)
    os.close(w)

    class NoSlowCheck(PasswordHasher):
        def verify(self, password: str, stored: str) -> tuple[bool, str | None]:
            raise AssertionError("the slow check ran although another worker proved this password")

    async def second() -> None:  # "worker 2"
        d = SqlDirectory(url, domain="esam.test")
        a = made(DirectoryAuthenticator(d, NoSlowCheck(1024, 1, 1), workers=1, failure_delay=0.0, cache=cache))
        assert (await a.authenticate("alice", "pw-alice-1", peer="10.0.0.2", service="smtp")).login == "alice"
        with pytest.raises(AssertionError, match="slow check ran"):  # a wrong password is never a hit
            await a.authenticate("alice", "pw-alice-2", peer="10.0.0.2", service="smtp")

    run(second())


def test_cache_renews_active_users_up_to_max_age_and_forgets() -> None:
    from esam_mail.services.authcache import SharedLoginCache

    c = SharedLoginCache(16, ttl=60, max_age=300)
    c.put("alice", "pw", "$h1", now=1000.0)
    assert c.check("alice", "pw", "$h1", now=1059.0)  # renewed: second half of its life
    assert c.check("alice", "pw", "$h1", now=1110.0)  # alive only because it was renewed
    assert not c.check("alice", "pw", "$h2", now=1111.0)  # password changed: new stored hash
    assert not c.check("alice", "other", "$h1", now=1111.0)
    t = 1111.0
    while t < 1290.0:  # keep it busy: renewed every 40 s ...
        assert c.check("alice", "pw", "$h1", now=t)
        t += 40.0
    assert not c.check("alice", "pw", "$h1", now=1301.0)  # ... but never past max_age
    c.put("alice", "pw", "$h1", now=2000.0)
    c.forget("alice")
    assert not c.check("alice", "pw", "$h1", now=2001.0)
    off = c._offset("bob")
    c.put("bob", "pw", "$h", now=0.0)
    c._map[off + 3] ^= 0xFF  # a torn/corrupted entry fails the HMAC, never passes
    assert not c.check("bob", "pw", "$h", now=1.0)
    assert not SharedLoginCache(4, ttl=0).check("bob", "pw", "$h", now=1.0)


def _count_reads(a: DirectoryAuthenticator) -> list[str]:
    """Directory reads from now on: a session opened ("sessions", "readers"), or the SQLite
    login lookup's one read transaction (counted as "readers")."""
    opened: list[str] = []
    for name in ("sessions", "readers"):
        real = getattr(a.directory, name)
        setattr(a.directory, name, lambda real=real, name=name: opened.append(name) or real())
    direct = a.directory._direct
    if direct is not None:
        real_state = direct.login_state
        direct.login_state = lambda *args: opened.append("readers") or real_state(*args)  # type: ignore[method-assign]
    return opened


def test_a_cached_login_is_one_directory_read(url: str) -> None:
    """Mailbox, second factor and failure counters come in one read transaction (issue 20)."""

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url, cache_seconds=60, state_seconds=0)  # the read itself, not its reuse
        a.second_factor = object()  # on, as the app wires it; alice has no second factor
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        opened = _count_reads(a)
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        assert opened == ["readers"]

    run(go())




def test_a_repeated_login_within_the_window_reads_nothing(url: str) -> None:
    """The directory's answer for a login proved moments ago from the same peer is reused
    for ``state_seconds`` (issue 20: the read was most of a cached login's cost)."""

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url, cache_seconds=60, state_seconds=30)
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        opened = _count_reads(a)
        p = await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        assert p.login == "alice" and opened == []
        # another peer: its failure counters are not known yet
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.2", service="imap")
        assert opened == ["readers"]
        # a wrong password is never decided from the remembered state
        with pytest.raises(AuthError):
            await a.authenticate("alice", "pw-wrong", peer="10.0.0.1", service="imap")
        assert "readers" in opened[1:]

    run(go())


def test_password_change_and_suspension_through_the_services_stop_at_once(url: str) -> None:
    """``forget`` (what the account services call on a password change or a suspension)
    clears the shared password cache: a remembered state no longer opens the mailbox, in this
    worker or another one sharing the cache."""
    from esam_mail.services.authcache import SharedLoginCache

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        shared = SharedLoginCache(64, ttl=60)
        a = make(url, cache=shared, state_seconds=3600)
        b = make(url, cache=shared, state_seconds=3600)  # another worker of the node
        for x in (a, b):
            await x.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
            await x.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        rec = await a.directory.get("alice")
        assert rec is not None
        await a.directory.set_password_hash(rec.id, HASHER.hash("pw-alice-2"))
        a.forget("alice")
        for x in (a, b):
            with pytest.raises(AuthError):
                await x.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
            assert (await x.authenticate("alice", "pw-alice-2", peer="10.0.0.1", service="imap")).login == "alice"
        await a.directory.set_state("alice", "suspended", actor=("sysadmin", "t"))
        b.forget("alice")
        for x in (a, b):
            with pytest.raises(AuthError):
                await x.authenticate("alice", "pw-alice-2", peer="10.0.0.1", service="imap")

    run(go())


def test_a_staff_suspension_stops_a_login_proved_moments_ago(url: str) -> None:
    """The staff console's suspend/close goes through StaffService, which tells the node's
    login cache (CI, e2e staff console: an IMAP login right after the suspension still
    succeeded, from the state remembered for the second before)."""
    from esam_mail.services.accounts.staff import StaffService
    from tests.conftest import add_staff

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url, cache_seconds=60, state_seconds=3600)
        for _ in range(2):
            await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        staff = StaffService(a.directory, lambda pw: "x", lambda pw, h: False, forget_login=a.forget)
        boss = await staff.get("boss")
        assert boss is not None
        await staff.set_mailbox_state(boss, "alice", "suspended", "owner's request")
        with pytest.raises(AccountDisabled):
            await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")

    add_staff(url, "boss", role="supervisor")
    run(go())


def test_a_change_that_bypasses_the_services_is_seen_within_the_window(url: str) -> None:
    """Another node (or a direct SQL edit) changes the password, suspends the mailbox or
    locks the peer without telling this node: the remembered state lasts ``state_seconds``."""

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url, cache_seconds=60, state_seconds=0.3, max_failures=2)
        elsewhere = SqlDirectory(url, domain="esam.test")
        rec = await elsewhere.get("alice")
        assert rec is not None

        async def login(pw: str) -> None:
            await a.authenticate("alice", pw, peer="10.0.0.1", service="imap")

        await login("pw-alice-1")
        await elsewhere.set_password_hash(rec.id, HASHER.hash("pw-alice-2"))
        await asyncio.sleep(0.35)
        with pytest.raises(AuthError):
            await login("pw-alice-1")
        await login("pw-alice-2")
        await login("pw-alice-2")
        await elsewhere.set_state("alice", "suspended", actor=("sysadmin", "t"))
        await asyncio.sleep(0.35)
        with pytest.raises(AuthError):
            await login("pw-alice-2")
        await elsewhere.set_state("alice", "active", actor=("sysadmin", "t"))
        await login("pw-alice-2")
        await login("pw-alice-2")
        # the peer is locked by another node's counters
        await elsewhere.record_failure(["login:alice|ip:10.0.0.1"], 2, 300)
        await elsewhere.record_failure(["login:alice|ip:10.0.0.1"], 2, 300)
        await asyncio.sleep(0.35)
        with pytest.raises(AuthError, match="locked"):
            await login("pw-alice-2")
        await elsewhere.close()

    run(go())


def test_sqlite_login_lookup_is_one_thread_hop_and_reads_what_the_session_reads(url: str) -> None:
    """On SQLite the login lookup runs as one read transaction in one worker-thread hop on a
    plain sqlite3 connection, not through SQLAlchemy's async session (a dozen aiosqlite
    hand-offs, most of a cached login's CPU, issue 20); its answer is the session path's."""
    from esam_mail.directory.models import SecondFactor

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        await add(url, "bob", "$legacy")
        d = SqlDirectory(url, domain="esam.test")
        assert d._direct is not None
        bob = await d.get("bob")
        assert bob is not None
        async with d.transaction() as s:
            s.add(SecondFactor(mailbox_id=bob.id, totp_secret="X" * 32))
        await d.set_state("bob", "suspended", actor=("sysadmin", "t"))
        await d.record_failure(["ip:10.0.0.9", "login:bob|ip:10.0.0.9"], 2, 300)
        await d.record_failure(["login:bob|ip:10.0.0.9"], 2, 300)  # locked now
        direct, d._direct = d._direct, None  # the session path, for comparison
        cases = [("alice", []), ("bob", ["ip:10.0.0.9", "login:bob|ip:10.0.0.9", "login:bob"]),
                 ("bob@esam.test", ["ip:10.0.0.1"]), ("nobody", ["ip:10.0.0.9"]), ("x@elsewhere.test", [])]
        expected = [await d.login_state(u, k) for u, k in cases]
        d._direct = direct
        d.readers = d.sessions = None  # type: ignore[assignment]
        hops: list[object] = []
        loop = asyncio.get_running_loop()
        real = loop.run_in_executor
        loop.run_in_executor = lambda pool, fn, *a: hops.append(pool) or real(pool, fn, *a)  # type: ignore[method-assign]
        got = [await d.login_state(u, k) for u, k in cases]
        loop.run_in_executor = real  # type: ignore[method-assign]
        assert hops == [direct.pool] * len(cases)
        for want, have in zip(expected, got, strict=True):
            assert have.record == want.record and have.second_factor == want.second_factor
            assert {k: (f.count, f.first_at, f.locked_until) for k, f in have.failures.items()} == {
                k: (f.count, f.first_at, f.locked_until) for k, f in want.failures.items()}
        assert got[1].second_factor and got[1].record is not None and got[1].record.state == "suspended"
        assert got[1].failures["login:bob|ip:10.0.0.9"].locked_until is not None
        assert got[2].record == got[1].record and got[3].record is None
        await d.close()

    run(go())
