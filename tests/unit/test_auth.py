"""Password logins: cache, rehash on login, brute-force counters shared through the database."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt

from esam_mail.directory.passwords import PasswordHasher
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import AuthError
from esam_mail.services.auth import DirectoryAuthenticator
from tests.conftest import migrate_directory

HASHER = PasswordHasher(memory_kib=1024, time_cost=1, parallelism=1)


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}"
    migrate_directory(u)
    return u


def make(url: str, **kw: object) -> DirectoryAuthenticator:
    d = SqlDirectory(url, domain="esam.test")
    return DirectoryAuthenticator(d, HASHER, workers=2, failure_delay=0.0, **kw)  # type: ignore[arg-type]


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

    asyncio.run(go())


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

    asyncio.run(go())


def test_legacy_hash_is_rehashed_to_argon2id_on_login(url: str) -> None:
    async def go() -> None:
        await add(url, "old", "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash("legacy-pw"))  # glibc default rounds: fast
        a = make(url)
        await a.authenticate("old", "legacy-pw", peer="10.0.0.1", service="imap")
        rec = await a.directory.get("old")
        assert rec is not None and rec.password_hash.startswith("$argon2id$")
        await a.authenticate("old", "legacy-pw", peer="10.0.0.1", service="smtp")

    asyncio.run(go())


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

    asyncio.run(go())


def test_suspended_mailbox_cannot_log_in(url: str) -> None:
    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url)
        await a.directory.set_state("alice", "suspended", actor=("sysadmin", "t"))
        with pytest.raises(AuthError):
            await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")

    asyncio.run(go())


def test_cache_is_shared_with_forked_workers_and_skips_the_slow_check(url: str) -> None:
    """A login proved in one worker is a cache hit in another (the supervisor makes the
    table before it forks); the slow hash check is not called for it."""
    from esam_mail.services.authcache import SharedLoginCache

    cache = SharedLoginCache(64, ttl=60)

    async def first() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))

    asyncio.run(first())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # "worker 1": proves the password the slow way
        code = 1
        try:
            a = make(url, cache=cache)
            asyncio.run(a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap"))
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
        a = DirectoryAuthenticator(d, NoSlowCheck(1024, 1, 1), workers=1, failure_delay=0.0, cache=cache)
        assert (await a.authenticate("alice", "pw-alice-1", peer="10.0.0.2", service="smtp")).login == "alice"
        with pytest.raises(AssertionError, match="slow check ran"):  # a wrong password is never a hit
            await a.authenticate("alice", "pw-alice-2", peer="10.0.0.2", service="smtp")

    asyncio.run(second())


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


def test_a_cached_login_is_one_directory_read(url: str) -> None:
    """Mailbox, second factor and failure counters come in one read transaction (issue 20)."""

    async def go() -> None:
        await add(url, "alice", HASHER.hash("pw-alice-1"))
        a = make(url, cache_seconds=60, state_seconds=0)  # the read itself, not its reuse
        a.second_factor = object()  # on, as the app wires it; alice has no second factor
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        opened: list[str] = []
        for name in ("sessions", "readers"):
            real = getattr(a.directory, name)
            setattr(a.directory, name, lambda real=real, name=name: opened.append(name) or real())
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        assert opened == ["readers"]

    asyncio.run(go())


def _count_reads(a: DirectoryAuthenticator) -> list[str]:
    opened: list[str] = []
    for name in ("sessions", "readers"):
        real = getattr(a.directory, name)
        setattr(a.directory, name, lambda real=real, name=name: opened.append(name) or real())
    return opened


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

    asyncio.run(go())


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

    asyncio.run(go())


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

    asyncio.run(go())
