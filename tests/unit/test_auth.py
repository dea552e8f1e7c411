"""Password logins: cache, rehash on login, brute-force counters shared through the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt

from esam_mail.directory.passwords import PasswordHasher
from esam_mail.directory.sql import SqlDirectory, upgrade_schema_sync
from esam_mail.errors import AuthError
from esam_mail.services.auth import DirectoryAuthenticator

HASHER = PasswordHasher(memory_kib=1024, time_cost=1, parallelism=1)


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}"
    upgrade_schema_sync(u)
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
        assert "alice" in a._cache
        with pytest.raises(AuthError):
            await a.authenticate("alice", "pw-alice-2", peer="10.0.0.1", service="imap")
        await a.authenticate("alice", "pw-alice-1", peer="10.0.0.1", service="imap")

    asyncio.run(go())


def test_legacy_hash_is_rehashed_to_argon2id_on_login(url: str) -> None:
    async def go() -> None:
        await add(url, "old", "{SHA512-CRYPT}" + sha512_crypt.hash("legacy-pw"))
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
