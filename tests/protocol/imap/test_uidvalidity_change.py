"""UIDVALIDITY changing under a selected session (uidlist rebuilt by `esam store check --repair`
or another process): the session's UIDs lost their meaning, so the server says BYE
(RFC 3501 §2.3.1.1: UIDs must not change within a session) instead of serving
renumbered messages under the old UIDVALIDITY."""

from __future__ import annotations

import re

import pytest

from esam_mail.store.check import check_user
from tests.protocol.imap.conftest import Raw, msg


def test_uidvalidity_change_ends_the_selected_session(env):
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    r = Raw.tls(env)
    r.login()
    out = r.cmd(b"s", b"SELECT INBOX")
    old_uv = re.search(rb"UIDVALIDITY (\d+)", b"\n".join(out)).group(1)
    user = env.store.user("alice")
    folder = user.folder("INBOX")
    keys = [i.key for i in folder.sync()]
    (user.path / "dovecot-uidlist").write_text(
        f"3 V{old_uv.decode()} N4 G0\n1 :{keys[0]}\n3 :{keys[1]}\n3 :{keys[2]}\n"
    )
    check_user(user, repair=True)
    r.send(b"n NOOP\r\n")
    lines: list[bytes] = []
    with pytest.raises(EOFError):  # the server closes the connection
        while not (lines and lines[-1].startswith(b"n ")):
            lines.append(r.line())
    assert any(x.startswith(b"* BYE [UNAVAILABLE]") and b"UIDVALIDITY" in x for x in lines), lines
    assert not any(b"FETCH" in x or b"EXISTS" in x for x in lines), lines
    # a new session sees the new UIDVALIDITY and consistent UIDs
    r2 = Raw.tls(env)
    r2.login()
    out = r2.cmd(b"s", b"SELECT INBOX")
    assert re.search(rb"UIDVALIDITY (\d+)", b"\n".join(out)).group(1) != old_uv
    assert r2.cmd(b"f", b"UID FETCH 1:* (UID)")[:-1] == [
        b"* 1 FETCH (UID 1)",
        b"* 2 FETCH (UID 2)",
        b"* 3 FETCH (UID 3)",
    ]
