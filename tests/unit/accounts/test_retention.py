"""`esam retention run [--dry-run]` (issue 16, item 5), through the CLI in process.

Expired content goes (closed mailboxes' mail, applications and consents, hybrid jobs and item
logs, closed mailboxes' applications), one ``retention.purge`` audit event each; the mailbox row that keeps a
login reserved never goes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from tests.unit.accounts.conftest import Cli
from tests.unit.registration.test_cli import FLAGS, OFFICE

GOOD = "Zhibek-Zholy-77"
OLD = "2020-01-01 00:00:00.000000"


def sql(cli: Cli, statement: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(cli.cfg.data_dir / "directory.db")
    try:
        rows = db.execute(statement).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def hybrid_fixture(cli: Cli) -> dict[str, Path]:
    root = cli.cfg.data_dir / "hybrid"
    old_job = root / "batches" / "jobs" / "ALA01-20200101T000000Z-aaaaaa"
    new_job = root / "batches" / "jobs" / "ALA01-20990101T000000Z-bbbbbb"
    for job, closed in ((old_job, "2020-01-02T00:00:00Z"), (new_job, "2099-01-02T00:00:00Z")):
        job.mkdir(parents=True)
        (job / "manifest.json").write_text(json.dumps({"closed": closed, "items": []}))
        (job / "RR000000005KZ.pdf").write_bytes(b"%PDF-1.4 x")
    done = root / "events" / "00" / "RR000000005KZ.jsonl"
    open_item = root / "events" / "01" / "RR000000014KZ.jsonl"
    done.parent.mkdir(parents=True)
    open_item.parent.mkdir(parents=True)
    done.write_text(json.dumps({"event": "DELIVERED"}) + "\n")
    open_item.write_text(json.dumps({"event": "HANDED_TO_POST"}) + "\n")  # not finished: kept
    item = root / "items" / "RR000000005KZ.json"
    item.parent.mkdir(parents=True)
    item.write_text("{}")
    past = time.time() - 3 * 365 * 86400
    for p in (done, open_item, item):
        os.utime(p, (past, past))
    return {"old_job": old_job, "new_job": new_job, "done": done, "open": open_item, "item": item}


def test_retention_run_purges_what_expired_and_keeps_the_login(cli: Cli) -> None:
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin=GOOD + "\n")
    assert rc == 0, err
    maildir = cli.cfg.store_path / "asem"
    assert maildir.is_dir()
    assert cli("mailbox", "close", "asem", "--reason", "holder's request")[0] == 0
    sql(cli, f"UPDATE mailboxes SET closed_at = '{OLD}'")
    sql(cli, f"UPDATE applications SET submitted_at = '{OLD}'")
    files = hybrid_fixture(cli)

    plan = cli.json("retention", "run", "--dry-run")
    kinds = sorted((p["class"], p["target"]) for p in plan["purged"])
    assert kinds == [
        ("application", "application:1"), ("closed_mail", "asem@esam.test"),
        ("hybrid_item", "RR000000005KZ"), ("hybrid_job", "ALA01-20200101T000000Z-aaaaaa"),
    ]
    assert maildir.is_dir() and files["old_job"].is_dir()  # a dry run changes nothing
    assert sql(cli, "SELECT count(*) FROM applications") == [(1,)]

    done = cli.json("retention", "run")
    assert len(done["purged"]) == 4
    assert not maildir.exists()
    assert sql(cli, "SELECT count(*) FROM applications") == [(0,)]
    assert sql(cli, "SELECT data FROM subscribers") == [("{}",)]
    assert not files["old_job"].exists() and files["new_job"].is_dir()
    assert not files["done"].exists() and not files["item"].exists() and files["open"].exists()
    # the mailbox row stays: the login is reserved for ever
    assert sql(cli, "SELECT login_norm, state FROM mailboxes") == [("asem", "closed")]
    audit = cli.json("audit", "list", "--action", "retention.purge", "--limit", "100")
    assert sorted(a["detail"]["class"] for a in audit) == ["application", "closed_mail", "hybrid_item", "hybrid_job"]
    assert sql(cli, "SELECT count(*) FROM audit_events WHERE action = 'mailbox.register'") == [(1,)]  # kept
    rc, _, err = cli("register", "individual", *[("751111300031" if a == "850525400017" else a) for a in FLAGS],
                     *OFFICE, "--password-stdin", stdin=GOOD + "\n")
    assert rc == 2 and "login taken" in err  # never issued again

    again = cli.json("retention", "run")
    assert again["purged"] == []


def test_periods_are_documented_and_zero_keeps_for_ever(cli: Cli) -> None:
    from tests.conftest import ROOT

    text = (ROOT / "conf" / "esam.toml").read_text()
    for key in ("closed_mail_days", "applications_days", "hybrid_days"):
        assert f"#{key} = " in text
    assert "[retention]" in text
