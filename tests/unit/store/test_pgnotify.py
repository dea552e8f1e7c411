"""PgNotifier: IDLE hints across processes/nodes over PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from esam_mail.store.pgnotify import PgNotifier, asyncpg_dsn


def test_asyncpg_dsn_drops_the_sqlalchemy_driver() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://u:p@h:5433/db?ssl=require") == "postgresql://u:p@h:5433/db?ssl=require"
    with pytest.raises(ValueError):
        asyncpg_dsn("sqlite+aiosqlite:///x.db")


def test_publish_before_start_reaches_local_subscribers_only() -> None:
    n = PgNotifier("postgresql://nobody@127.0.0.1:1/none")
    got: list[tuple[str, str]] = []
    n.subscribe(lambda login, folder: got.append((login, folder)))
    n.publish("alice", "INBOX")  # no loop, no connection: local only, no error
    assert got == [("alice", "INBOX")]
    n.close()


@pytest.mark.postgres
def test_two_notifiers_see_each_other_not_their_own_echo() -> None:
    url = os.environ.get("ESAM_TEST_PG_URL", "")
    if not url:
        if os.environ.get("ESAM_REQUIRE_PG") == "1":
            pytest.fail("ESAM_REQUIRE_PG=1 but ESAM_TEST_PG_URL is not set")
        pytest.skip("ESAM_TEST_PG_URL is not set")
    dsn = asyncpg_dsn(url)

    async def main() -> None:
        channel = f"esam_test_{os.getpid()}"
        a, b = PgNotifier(dsn, channel=channel), PgNotifier(dsn, channel=channel)
        await a.start()
        await b.start()
        assert a.connected and b.connected
        seen_a: list[tuple[str, str]] = []
        seen_b: list[tuple[str, str]] = []
        arrived = asyncio.Event()

        def on_b(login: str, folder: str) -> None:
            seen_b.append((login, folder))
            if len(seen_b) == 2:
                arrived.set()

        a.subscribe(lambda lg, f: seen_a.append((lg, f)))
        b.subscribe(on_b)
        a.publish("alice", "INBOX")
        # from a worker thread, as the SMTP delivery does
        t = threading.Thread(target=a.publish, args=("bob", "Projects/2026 é"))
        t.start()
        t.join()
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.sleep(0.2)  # a's own echo would arrive by now
        assert sorted(seen_b) == [("alice", "INBOX"), ("bob", "Projects/2026 é")]
        assert sorted(seen_a) == sorted(seen_b)  # local delivery once, the echo ignored
        a.close()
        b.close()

    asyncio.run(main())
