"""The second factor over a real directory (SQLite, and PostgreSQL when ESAM_TEST_PG_URL is set):
steps and recovery codes are spent once even when two logins race, app passwords by digest."""

from __future__ import annotations

import asyncio

import pyotp

from esam_mail.directory.sql import SqlDirectory
from esam_mail.services.accounts.second_factor import SecondFactorService
from tests.unit.registration.conftest import db_url  # noqa: F401 - the parametrised database fixture


def test_second_factor_spends_once_and_checks_app_passwords(db_url: str) -> None:  # noqa: F811
    async def go() -> None:
        d = SqlDirectory(db_url, domain="esam.test")
        try:
            rec = await d.create_mailbox("aigerim", "x")
            now = 1_800_000_000.0
            sf = SecondFactorService(d, max_failures=3, lock_seconds=60, clock=lambda: now)
            secret = sf.new_secret()
            assert await sf.enable(rec.id, secret, "000000") is None and not await sf.enabled(rec.id)
            codes = await sf.enable(rec.id, secret, pyotp.TOTP(secret).at(now))
            assert codes is not None and len(set(codes)) == 10 and await sf.enabled(rec.id)
            # the step used to turn it on is spent; the next one works once, even raced
            sf.clock = lambda: now + 30
            nxt = pyotp.TOTP(secret).at(now + 30)
            results = await asyncio.gather(sf.verify(rec.id, "aigerim", nxt), sf.verify(rec.id, "aigerim", nxt))
            assert sorted(results) == [False, True]
            assert await sf.verify(rec.id, "aigerim", codes[3].upper())  # typed in capitals: same code
            assert not await sf.verify(rec.id, "aigerim", codes[3])
            assert await sf.recovery_left(rec.id) == 9
            made = await sf.create_app_password(rec.id, "Thunderbird")
            assert await sf.check_app_password(rec.id, made.password)
            assert not await sf.check_app_password(rec.id, made.password + "x")
            [row] = await sf.app_passwords(rec.id)
            assert row.name == "Thunderbird" and row.last_used_at is not None
            # wrong codes lock, then even a right one is refused
            for _ in range(3):
                assert not await sf.verify(rec.id, "aigerim", "111111")
            sf.clock = lambda: now + 90
            assert not await sf.verify(rec.id, "aigerim", pyotp.TOTP(secret).at(now + 90))
            await sf.disable(rec.id)
            assert not await sf.enabled(rec.id) and not await sf.check_app_password(rec.id, made.password)
        finally:
            await d.close()

    asyncio.run(go())
