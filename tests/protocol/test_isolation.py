"""Isolation (R12): IMAP folder names never leave the user's Maildir.

Alice tries every trick (``..``, ``/``, absolute paths, NUL, CR/LF, percent-encoding,
modified-UTF-7 encodings of ``/`` and ``.``, very long names, ``~bob``, ``#shared``)
with SELECT, EXAMINE, STATUS, CREATE, DELETE, APPEND, COPY, MOVE, RENAME, SUBSCRIBE
and LIST patterns.  Afterwards nothing outside her Maildir changed, Bob's files are
byte-identical, no reply names a path, and LIST never shows one of Bob's folders.
Names go out as literals, so bytes no quoted string can carry reach the parser.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.protocol.harness import Running, client_tls
from tests.rawclient import RawIMAP, open_socket

pytestmark = pytest.mark.protocol

PASSWORD = "isolation-Passw0rd"
MESSAGE = b"From: carol@ext.test\r\nTo: alice@esam.test\r\nSubject: mine\r\n\r\nhello\r\n"

#: Names that would leave the Maildir if used as paths: every command must refuse them.
ESCAPES = [
    b"..", b"../bob", b"../../bob", b"/etc", b"/etc/passwd", b"INBOX/../../bob", b"INBOX/..",
    b"../bob/INBOX", b"a/../../bob", b".", b"./..", b"a\x00b", b"..\x00", b"bob\r\nx", b"x\ry", b"x\ny",
    b"&AC8-", b"&AC8-etc", b"&AC4-", b"&AC4-&AC4-", b"&AC4ALg-", b"&AC4ALgAv-bob", b"..&AC8-bob",
    b"x" * 1000, b"a/" * 300 + b"b",
]  # fmt: skip
#: Odd but maybe legal names: refused, or created inside Alice's Maildir.
ODD = [b"%2E%2E", b"%2E%2E/bob", b"~bob", b"~bob/INBOX", b"#shared/bob", b"#shared/bob/INBOX",
       b"bob/INBOX", b"BobSecret", b"\\..\\bob"]  # fmt: skip


class Client(RawIMAP):
    """The shared IMAP line client over IMAPS, logged in as alice; names go as LITERAL- (RFC 7888)."""

    def __init__(self, port: int) -> None:
        super().__init__(open_socket(port, tls=client_tls(), timeout=20), timeout=20)
        assert self.status_of(self.cmd(b"LOGIN alice " + lit(PASSWORD.encode()))) == b"OK"

    def cmd(self, text: bytes) -> list[bytes]:
        return self.command(text)


def lit(value: bytes) -> bytes:
    return b"{%d+}\r\n" % len(value) + value


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every path under ``root`` except ``skip``'s subtree -> content hash (files) or 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents or p.name.startswith("directory.db") or "run" in p.parts:
            continue
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture
def two_users(make_running: Any) -> Running:
    r: Running = make_running()
    r.add_mailbox("alice", PASSWORD)
    r.add_mailbox("bob", "bob-Passw0rd")
    bob = r.services.store.user("bob")
    bob.create_folder("BobSecret")
    bob.deliver(b"Subject: bob's\r\n\r\nprivate\r\n")
    bob.deliver(b"Subject: bob's too\r\n\r\nprivate\r\n", "BobSecret")
    r.services.store.user("alice").deliver(MESSAGE)
    return r


def _no_path_in(reply: list[bytes], r: Running) -> None:
    text = b"\n".join(x for x in reply if not x.startswith(b"* LIST"))
    for needle in (str(r.cfg.data_dir).encode(), b"/tmp", b"Errno", b"Traceback", b"Error:", b"/etc"):
        assert needle not in text, (needle, reply)


def test_folder_name_tricks_stay_inside_alices_maildir(two_users: Running) -> None:
    r = two_users
    root = r.cfg.data_dir.parent
    alice_dir = r.cfg.store_path / "alice"
    before = snapshot(root, alice_dir)
    c = Client(r.ports["imaps"])
    assert c.status_of(c.cmd(b"SELECT INBOX")) == b"OK"
    for name in ESCAPES + ODD:
        n = lit(name)
        replies = {
            "SELECT": c.cmd(b"EXAMINE " + n),
            "STATUS": c.cmd(b"STATUS " + n + b" (MESSAGES)"),
            "CREATE": c.cmd(b"CREATE " + n),
            "APPEND": c.cmd(b"APPEND " + n + b" " + lit(MESSAGE)),
            "COPY": c.cmd(b"COPY 1 " + n),
            "MOVE": c.cmd(b"MOVE 1 " + n),
            "RENAME": c.cmd(b"RENAME Archive " + n),
            "SUBSCRIBE": c.cmd(b"SUBSCRIBE " + n),
            "DELETE": c.cmd(b"DELETE " + n),
        }
        for verb, reply in replies.items():
            _no_path_in(reply, r)
            if name in ESCAPES:
                assert c.status_of(reply) in (b"NO", b"BAD"), (name, verb, reply)
        if c.status_of(replies["RENAME"]) == b"OK":  # an odd but legal name: put Archive back
            assert c.status_of(c.cmd(b"RENAME " + n + b" Archive")) == b"OK"
        if c.status_of(replies["MOVE"]) == b"OK":
            assert c.status_of(c.cmd(b"SELECT " + n)) == b"OK"
            assert c.status_of(c.cmd(b"MOVE 1:* INBOX")) == b"OK"
        assert c.status_of(c.cmd(b"SELECT INBOX")) == b"OK"
    assert snapshot(root, alice_dir) == before, "something outside alice's Maildir changed"
    # her own message is still there, exactly once
    assert any(b"EXISTS" in x for x in c.cmd(b"SELECT INBOX"))
    fetched = b"\n".join(c.cmd(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert fetched.count(b"Subject: mine") == 1


@pytest.mark.parametrize("ref,pattern", [
    (b"", b"*"), (b"", b"%"), (b"", b"../*"), (b"../", b"*"), (b"/", b"*"), (b"", b"/*"),
    (b"", b"~bob/*"), (b"~bob/", b"*"), (b"#shared/", b"*"), (b"", b"*BobSecret*"), (b"..", b"%"),
    (b"", b"&AC4-&AC4-/*"), (b"", b"..\x00*"), (b"", b"*/../*"),
])  # fmt: skip
def test_list_patterns_show_only_alices_folders(two_users: Running, ref: bytes, pattern: bytes) -> None:
    r = two_users
    alice_folders = {f.name for f in r.services.store.user("alice").list_folders()}
    c = Client(r.ports["imaps"])
    for verb in (b"LIST", b"LSUB"):
        reply = c.cmd(verb + b" " + lit(ref) + b" " + lit(pattern))
        _no_path_in(reply, r)
        assert c.status_of(reply) in (b"OK", b"NO", b"BAD")
        for line in reply[:-1]:
            assert line.startswith(b"* " + verb + b" "), line
            assert b"BobSecret" not in line and b"bob" not in line.lower(), line
            name = re.search(rb'"/" (?:"(.*)"|\{\d+\}\r\n(.*)|(\S+))$', line, re.S)
            assert name, line
            shown = next(g for g in name.groups() if g is not None).decode()
            assert shown in alice_folders, (shown, alice_folders)
