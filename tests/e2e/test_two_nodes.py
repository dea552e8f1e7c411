"""Two nodes: two `esam serve` with their own ports and data dirs, one PostgreSQL
directory and one store folder.

The nodes' run dirs differ, so the unix-datagram notifier cannot connect them: the
IDLE push from A to B must travel through PostgreSQL LISTEN/NOTIFY (PgNotifier).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.imap_raw import RawIMAP

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "correct horse battery"


def _server_url() -> str:
    url = os.environ.get("ESAM_TEST_PG_URL", "")
    if not url:
        why = ("ESAM_TEST_PG_URL is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test; "
               "scripts/test.sh sets it when PostgreSQL answers on 127.0.0.1:5432)")
        if os.environ.get("ESAM_REQUIRE_PG") == "1":
            pytest.fail(f"ESAM_REQUIRE_PG=1 but {why}")
        pytest.skip(why)
    return url


async def _admin(url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host or "127.0.0.1", port=u.port or 5432,
                                 user=u.username or "postgres", password=u.password,
                                 database="postgres", timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database esam_t_<random> on the test server, dropped afterwards."""
    from sqlalchemy.engine import make_url

    server = _server_url()
    name = f"esam_t_{secrets.token_hex(6)}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def nodes(make_esam: Any, pg_url: str, tmp_path: Path) -> tuple[Any, Any]:
    store = tmp_path / "shared-store"
    common: dict[str, Any] = {"directory": {"url": pg_url}, "store": {"path": str(store)}}
    a = make_esam("a", **common)
    b = make_esam("b", **common)
    a.esam("init")
    a.add_mailbox("alice", PASSWORD)
    a.start()
    b.start()
    assert a.data != b.data and set(a.ports.values()).isdisjoint(b.ports.values())
    return a, b


def _send(port: int, subject: str) -> None:
    msg = f"From: bob@remote.test\r\nTo: alice@esam.test\r\nSubject: {subject}\r\n\r\nhello from A\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("bob@remote.test", ["alice@esam.test"], msg.encode())


def test_delivery_on_a_is_pushed_to_idle_on_b_flags_and_logins_cross_nodes(nodes: tuple[Any, Any]) -> None:
    a, b = nodes
    on_b = RawIMAP(b.ports["imaps"])
    try:
        on_b.login("alice", PASSWORD)
        on_b.cmd("SELECT INBOX")
        on_b.idle()
        subject = f"via-A-{secrets.token_hex(4)}"
        _send(a.ports["smtp"], subject)
        _, waited = on_b.wait_for(rb"^\* 1 EXISTS", timeout=1.0)  # B's IDLE poll is 5 s: this is the push
        assert waited < 1.0
        on_b.done()
        body = b"\n".join(on_b.cmd("FETCH 1 BODY.PEEK[]"))
        assert subject.encode() in body and b"hello from A" in body
        on_b.cmd("STORE 1 +FLAGS (\\Flagged)")
    finally:
        on_b.close()

    on_a = RawIMAP(a.ports["imaps"])
    try:
        on_a.login("alice", PASSWORD)
        on_a.cmd("SELECT INBOX")
        flags = b"\n".join(on_a.cmd("FETCH 1 (FLAGS)"))
        assert b"\\Flagged" in flags
    finally:
        on_a.close()

    # a mailbox created through A logs in on B (one directory)
    a.add_mailbox("carol", "another secret pw")
    on_b = RawIMAP(b.ports["imaps"])
    try:
        on_b.login("carol", "another secret pw")
        on_b.cmd("SELECT INBOX")
    finally:
        on_b.close()
