"""First-hour CLI checks: every numeric option refuses bad values with a message naming the
option (exit 2, before anything runs); ``--password-stdin`` at a terminal prompts without echo."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from esam_mail import cli
from esam_mail.cli import commands
from esam_mail.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]

BAD = [
    (["mailbox", "add", "alice", "--quota-mb", "-5"], "--quota-mb", "between 0 and 1073741824, got -5"),
    (["mailbox", "add", "alice", "--quota-mb", "ten"], "--quota-mb", "whole number"),
    (["mailbox", "add", "alice", "--quota-mb", "1.5"], "--quota-mb", "whole number"),
    (["serve", "--workers", "0"], "--workers", "between 1 and 64"),
    (["serve", "--workers", "65"], "--workers", "between 1 and 64"),
    (["audit", "list", "--limit", "0"], "--limit", "between 1"),
    (["passwd-bench", "--target-ms", "0"], "--target-ms", "more than 0"),
    (["passwd-bench", "--target-ms", "nan"], "--target-ms", "more than 0"),
    (["passwd-bench", "--target-ms", "-3"], "--target-ms", "more than 0"),
    (["passwd-bench", "--rounds", "0"], "--rounds", "between 1 and 100"),
    (["passwd-bench", "--max-memory-mib", "18"], "--max-memory-mib", "between 19"),
    (["eds", "test-pki", "issue", "--days", "0"], "--days", "between 1 and 36500"),
]


@pytest.mark.parametrize(("argv", "option", "why"), BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_numbers_are_refused_naming_the_option(
    argv: list[str], option: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and why in err, err


def test_good_numbers_pass() -> None:
    args = cli.parser().parse_args(["mailbox", "add", "alice", "--quota-mb", "0"])
    assert args.quota_mb == 0
    args = cli.parser().parse_args(["passwd-bench", "--target-ms", "250.5", "--rounds", "5"])
    assert (args.target_ms, args.rounds) == (250.5, 5)


def test_no_numeric_option_is_left_unchecked() -> None:
    bare = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "esam_mail" / "cli").glob("*.py"))
        if p.name != "args.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"type=(int|float)\b", line)
    ]
    assert not bare, f"use esam_mail.cli.args.whole/number: {bare}"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_stdin_at_a_terminal_prompts_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    monkeypatch.setattr("sys.stdin", _Tty("must not be read\n"))
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt: prompts.append(prompt) or "s3cret-enough")
    assert commands.password_from_stdin() == "s3cret-enough"
    assert prompts == ["Password (not shown): ", "Repeat: "]


def test_password_stdin_at_a_terminal_refuses_a_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first-try-pass", "first-try-pasS"])
    monkeypatch.setattr("sys.stdin", _Tty(""))
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(ValidationError) as exc:
        commands.password_from_stdin()
    assert exc.value.field == "password"


def test_password_stdin_from_a_pipe_reads_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("piped-password\nnext line\n"))
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt: pytest.fail("no prompt on a pipe"))
    assert commands.password_from_stdin() == "piped-password"
