"""`esam stats`: mailboxes by kind and state, messages and storage from the cached usage, queue."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from esam_mail import app, config
from esam_mail.cli import main
from tests.conftest import write_config


def test_stats_counts_mailboxes_mail_and_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config.load(write_config(tmp_path))
    app.init(cfg)

    async def populate() -> None:
        svc = app.build(cfg)
        try:
            for login, kind in (("alice", "personal"), ("bob", "personal"), ("postmaster", "service")):
                rec = await svc.directory.create_mailbox(login, "x", kind=kind)
                svc.store.user(rec.login_norm).create()
            await svc.directory.set_state("bob", "suspended", actor=("sysadmin", "t"))
            svc.store.user("alice").deliver(b"Subject: a\r\n\r\n" + b"x" * 1000 + b"\r\n")
            svc.store.user("alice").folder("Sent").append(b"Subject: b\r\n\r\nhi\r\n")
            svc.spool.enqueue("alice@esam.test", ["a@r.example", "b@r.example"], b"Subject: q\r\n\r\n", now=1000.0)
        finally:
            svc.notifier.close()
            await svc.close()

    asyncio.run(populate())
    assert main(["-c", cfg.source, "stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mailboxes"] == {"total": 3, "by_kind": {"personal": {"active": 1, "suspended": 1},
                                                          "service": {"active": 1}}}
    sizes = len(b"Subject: a\r\n\r\n" + b"x" * 1000 + b"\r\n") + len(b"Subject: b\r\n\r\nhi\r\n")
    assert data["storage"] == {"messages": 2, "bytes": sizes}
    assert data["queue"]["messages"] == 1 and data["queue"]["recipients_pending"] == 2
    assert data["queue"]["oldest_age_seconds"] > 1e9
    assert main(["-c", cfg.source, "stats"]) == 0
    text = capsys.readouterr().out
    assert "mailboxes      3" in text and "personal     active 1, suspended 1" in text
    assert "queue          1 messages, 2 recipients pending" in text
