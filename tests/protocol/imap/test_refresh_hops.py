"""The changes reported at a command's end come from a look at the folder taken in the
command's own pool call (one thread hop, not two), and never from an older command's.

Before, every command that worked on the selected folder in the pool (STORE, FETCH of
bodies, EXPUNGE, COPY ...) hopped once more at its end to re-read the folder for the
untagged updates; the stress profile showed the extra hop per command.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.protocol.imap.conftest import Env, Raw, msg

pytestmark = pytest.mark.protocol


def _count_runs(env: Env) -> list[str]:
    """Record every pool call of the sessions' mailbox services (login, folder)."""
    calls: list[str] = []
    for f in env.factories:
        svc: Any = f.mailboxes
        inner = svc.run

        async def run(login: str, folder: str, fn: Any, *args: Any, _inner: Any = inner) -> Any:
            calls.append(folder)
            return await _inner(login, folder, fn, *args)

        svc.run = run
    return calls


@pytest.mark.parametrize("command", [
    b"STORE 1 +FLAGS (\\Flagged)",
    b"FETCH 1 (BODY.PEEK[])",
    b"UID SEARCH TEXT body",
])
def test_command_on_the_selected_folder_hops_once(env: Env, command: bytes) -> None:
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    assert c.cmd(b"W", command)[-1].startswith(b"W OK")  # summaries parsed and cached
    calls = _count_runs(env)
    r = c.cmd(b"C", command)
    assert r[-1].startswith(b"C OK"), r
    assert calls == ["INBOX"], calls


def test_changes_before_the_command_are_in_its_response(env: Env) -> None:
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    a, b = Raw.tls(env), Raw.tls(env)
    a.login()
    b.login()
    a.cmd(b"S", b"SELECT INBOX")
    b.cmd(b"S", b"SELECT INBOX")
    assert b.cmd(b"T", b"STORE 2 +FLAGS (\\Seen)")[-1].startswith(b"T OK")
    env.deliver(msg("new"))
    r = a.cmd(b"F", b"FETCH 1 (BODY.PEEK[])")
    assert any(b"* 2 FETCH (" in ln and b"\\Seen" in ln for ln in r), r
    assert b"* 4 EXISTS" in r, r


def test_a_later_command_looks_again(env: Env) -> None:
    """What a command's pool call saw is not reused by the next command: a change made
    between them is reported by the next one (NOOP here)."""
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    a, b = Raw.tls(env), Raw.tls(env)
    a.login()
    b.login()
    a.cmd(b"S", b"SELECT INBOX")
    b.cmd(b"S", b"SELECT INBOX")
    assert a.cmd(b"F", b"FETCH 1 (BODY.PEEK[])")[-1].startswith(b"F OK")
    assert b.cmd(b"T", b"STORE 3 +FLAGS (\\Flagged)")[-1].startswith(b"T OK")
    r = a.cmd(b"N", b"NOOP")
    assert any(b"* 3 FETCH (" in ln and b"\\Flagged" in ln for ln in r), r
    assert b.cmd(b"E", b"STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"E OK")
    assert b.cmd(b"X", b"EXPUNGE")[-1].startswith(b"X OK")
    r = a.cmd(b"N2", b"NOOP")
    assert b"* 1 EXPUNGE" in r, r
