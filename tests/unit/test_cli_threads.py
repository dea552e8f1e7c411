"""No CLI command leaves a database connection's worker thread behind, whichever way it ends.

The CI failure behind this: an aiosqlite connection whose engine was never disposed outlived
the event loop of the command that opened it; when it was collected, its worker thread raised
"Event loop is closed" (PytestUnhandledThreadExceptionWarning in whichever test ran then).
Every command here runs in-process with ``threading.excepthook`` captured; afterwards no
aiosqlite worker thread may be alive and no thread may have raised.
"""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import aiosqlite.core
import pytest

from esam_mail.cli import main
from tests.conftest import write_config

PASSWORD = "Long-enough-Passw0rd\n"
COMMANDS: list[tuple[list[str], str]] = [
    (["init"], ""),
    (["mailbox", "add", "alice", "--password-stdin"], PASSWORD),
    (["mailbox", "add", "alice", "--password-stdin"], PASSWORD),  # taken: an error after opening
    (["mailbox", "add", "bad login!", "--password-stdin"], PASSWORD),  # refused by the service
    (["mailbox", "list"], ""),
    (["mailbox", "show", "nobody"], ""),  # not found
    (["mailbox", "suspend", "alice"], ""),
    (["mailbox", "resume", "alice"], ""),
    (["alias", "add", "abuse", "nobody@nowhere.test"], ""),
    (["alias", "add", "alice", "alice"], ""),  # an alias may not take a login
    (["alias", "list"], ""),
    (["audit", "list"], ""),
    (["stats"], ""),
    (["export", "nobody", "/nonexistent/out.mbox"], ""),  # NotFound raised after the loop
]


def _aiosqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if getattr(t, "_target", None) is aiosqlite.core._connection_worker_thread]


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    errors: list[str] = []
    monkeypatch.setattr(threading, "excepthook",
                        lambda a: errors.append(f"{a.thread and a.thread.name}: {a.exc_type.__name__}: {a.exc_value}"))
    before = set(_aiosqlite_threads())
    yield errors
    assert set(_aiosqlite_threads()) <= before


def _run(config: Path, argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        main(["-c", str(config), *argv])
    except (SystemExit, Exception):  # how a command ends is not the point here
        pass


def _assert_clean(argv: list[str], errors: list[str], before: set[threading.Thread]) -> None:
    gc.collect()
    for t in set(_aiosqlite_threads()) - before:
        t.join(5)  # a disposed connection's thread ends on its own, promptly
    left = set(_aiosqlite_threads()) - before
    assert not left, f"esam {' '.join(argv)} left {len(left)} aiosqlite thread(s) running"
    assert not errors, f"esam {' '.join(argv)}: a thread raised: {errors}"


def test_no_cli_command_leaves_a_database_thread(tmp_path: Path, thread_errors: list[str],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    before = set(_aiosqlite_threads())
    for argv, stdin in COMMANDS:
        _run(config, argv, stdin, monkeypatch)
        _assert_clean(argv, thread_errors, before)
    capsys.readouterr()
