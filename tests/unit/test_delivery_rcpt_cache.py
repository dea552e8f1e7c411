"""RCPT directory answers: cached briefly, refreshed in one query for busy recipients, and a
suspension still refuses mail within the cache lifetime."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import replace
from pathlib import Path

import pytest

from esam_mail.directory.sql import MailboxRecord
from esam_mail.errors import DeliveryError
from esam_mail.services.mailflow.delivery import DeliveryService
from esam_mail.store.maildir import MaildirStore


def record(login: str, state: str = "active") -> MailboxRecord:
    return MailboxRecord(id=1, login=login, login_norm=login, address=f"{login}@esam.test", state=state,
                         kind="personal", quota_bytes=None, password_hash="x", subscriber_id=None,
                         eds_confirmed=True, created_at=dt.datetime.now(dt.UTC))


class FakeDirectory:
    def __init__(self, logins: list[str]) -> None:
        self.records = {lg: record(lg) for lg in logins}
        self.gets = 0
        self.batches: list[int] = []

    async def get(self, login: str) -> MailboxRecord | None:
        self.gets += 1
        return self.records.get(login)

    async def get_many(self, logins: set[str]) -> dict[str, MailboxRecord]:
        self.batches.append(len(logins))
        return {lg: self.records[lg] for lg in logins if lg in self.records}


@pytest.fixture
def service(tmp_path: Path) -> tuple[DeliveryService, FakeDirectory]:
    directory = FakeDirectory([f"u{i}" for i in range(20)])
    svc = DeliveryService(directory, MaildirStore(tmp_path, fsync=False),  # type: ignore[arg-type]
                          local_domains=["esam.test"], hostname="mx.esam.test")
    svc.recipient_cache_seconds = 0.2
    return svc, directory


def test_busy_recipients_are_refreshed_together_and_a_suspension_still_counts(
    service: tuple[DeliveryService, FakeDirectory],
) -> None:
    svc, directory = service

    async def go() -> float:
        end = time.monotonic() + 1.2
        suspended_at = None
        while time.monotonic() < end:
            for i in range(20):
                try:
                    await svc.check_recipient(f"u{i}@esam.test", principal=None)
                except DeliveryError as e:
                    assert i == 7 and e.code == 550 and suspended_at is not None
                    return time.monotonic() - suspended_at
            if suspended_at is None and time.monotonic() > end - 0.6:
                directory.records["u7"] = replace(directory.records["u7"], state="suspended")
                suspended_at = time.monotonic()
            await asyncio.sleep(0.005)
        raise AssertionError("the suspended mailbox still took mail")

    seen_after = asyncio.run(go())
    assert seen_after <= svc.recipient_cache_seconds + 0.5  # slack for a loaded test machine
    # one lookup each (u7 again once dropped), then batched refreshes (without them: ~90)
    assert directory.gets <= 30
    assert directory.batches and max(directory.batches) > 1
    assert len(directory.batches) < 20
