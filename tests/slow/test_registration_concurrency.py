"""20 registrations of one login at once, from separate processes (rules, para. 4 and 11).

The login is unique across every mailbox ever issued and the database enforces
it, not a SELECT before the INSERT: exactly one process gets the mailbox, the
19 others get "login taken", and only one subscriber, application, mailbox and
Maildir exist afterwards.  Run on SQLite and on PostgreSQL (``db_url``), once
through the service in fresh processes (``forkserver``: forked from one server process that
imported the code once, instead of 20 interpreters importing it) and once through ``esam register``.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

from esam_mail.directory.models import AuditEvent
from tests.conftest import add_staff, write_config
from tests.unit.registration.conftest import Env
from tests.unit.registration.workers import distinct_iins, register_same_login

N = 20
ONE = {"subscribers": 1, "applications": 1, "mailboxes": 1, "maildirs": 1}


def _config(tmp: Path, url: str) -> Path:
    return write_config(tmp, directory={"url": url}, registration={"registry_policy": "accept"})


def test_twenty_processes_one_login(tmp_path: Path, db_url: str) -> None:
    config_path = _config(tmp_path, db_url)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.unit.registration.workers", "esam_mail.services.accounts.registration",
                                "esam_mail.directory.sql", "aiosqlite", "asyncpg"])
    barrier = ctx.Barrier(N)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=register_same_login, args=(str(config_path), iin, "same.name", barrier, results))
        for iin in distinct_iins(N)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    errors = [o for o in outcomes if o[0] == "error"]
    assert not errors, errors
    kinds = sorted(o[0] for o in outcomes)
    assert kinds == ["ok"] + ["taken"] * (N - 1), outcomes
    assert all("login taken" in msg for kind, msg in outcomes if kind == "taken")
    assert [msg for kind, msg in outcomes if kind == "ok"] == ["same.name@esam.test"]

    env = Env(tmp_path, db_url, config_path)
    try:
        assert env.written() == ONE
        assert [e.action for e in env.rows(AuditEvent)] == ["mailbox.register"]
    finally:
        env.close()


def test_twenty_esam_register_commands_one_login(tmp_path: Path, db_url: str) -> None:
    config_path = _config(tmp_path, db_url)
    esam = [sys.executable, "-m", "esam_mail", "-c", str(config_path)]
    subprocess.run([*esam, "init"], check=True, capture_output=True, timeout=120)
    add_staff(db_url, "e-1")
    env = Env(tmp_path, db_url, config_path)
    try:  # `esam init` made the operator's own mailbox: count what the race adds to it
        before = env.written()
    finally:
        env.close()
    procs: list[Any] = []
    for iin in distinct_iins(N):
        args = [
            *esam, "register", "individual", "--surname", "Ахметова", "--given-name", "Әсем",
            "--iin", iin, "--doc-type", "id_card", "--doc-number", "041234567", "--doc-issuer", "МВД РК",
            "--doc-issue-date", "2018-03-01", "--region", "Алматинская область", "--locality", "Қонаев",
            "--street", "ул. Абая", "--house", "12", "--postcode", "B01P3K4",
            "--mobile-phone", "+7 701 123 45 67", "--username", "same.name", "--office", "ALA01",
            "--employee", "e-1", "--accept-agreement", "2026-1", "--password-stdin",
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = [(*p.communicate("correct horse battery\n", timeout=300), p.returncode) for p in procs]
    codes = sorted(rc for _, _, rc in results)
    assert codes == [0] + [2] * (N - 1), results
    for out, errtext, rc in results:
        if rc == 0:
            assert "registered same.name@esam.test (active)" in out
        else:
            assert "username: login taken" in errtext, errtext
    env = Env(tmp_path, db_url, config_path)
    try:
        assert {k: v - before[k] for k, v in env.written().items()} == ONE
    finally:
        env.close()
