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
        a = make(url, cache_seconds=60)
        a.second_factor = object()  # on, as the app wires it; alice has no second factor
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        opened: list[str] = []
        for name in ("sessions", "readers"):
            real = getattr(a.directory, name)
            setattr(a.directory, name, lambda real=real, name=name: opened.append(name) or real())
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")
        assert opened == ["readers"]

    asyncio.run(go())
