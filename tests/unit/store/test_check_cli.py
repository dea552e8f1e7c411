"""`esam store check [--repair] [LOGIN ...] [--json]` in-process: break a uidlist, find it, repair it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from esam_mail.cli import main
from esam_mail.store.maildir import MaildirStore, MaildirUser
from esam_mail.store.uidlist import UidList
from tests.conftest import write_config

from .conftest import msg


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, MaildirStore]:
    cfg = write_config(tmp_path)
    store = MaildirStore(tmp_path / "data" / "mail", fsync=False)
    for login in ("alice", "bob"):
        store.user(login).create()
        for i in range(3):
            store.deliver_many([login], msg(i))
        store.user(login).folder("INBOX").sync()
    return cfg, store


def run(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["-c", str(cfg), "store", "check", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def uidlist(user: MaildirUser) -> UidList:
    return UidList.parse((user.path / "dovecot-uidlist").read_bytes())


def test_clean_store_exits_0_and_lists_every_user(
    setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = setup
    rc, out = run(cfg, capsys)
    assert rc == 0, out
    assert "user alice: ok" in out and "user bob: ok" in out
    assert "2 users checked, 0 with problems" in out


def test_deleted_uidlist_found_and_rebuilt(
    setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, store = setup
    alice = store.user("alice")
    old_uv = uidlist(alice).uidvalidity
    os.unlink(alice.path / "dovecot-uidlist")
    rc, out = run(cfg, capsys)
    assert rc == 1
    assert "uidlist missing" in out and "user alice: PROBLEMS" in out and "user bob: ok" in out
    assert not (alice.path / "dovecot-uidlist").exists(), "check without --repair changes nothing"
    rc, out = run(cfg, capsys, "--repair", "alice")
    assert rc == 0, out
    assert "new UIDVALIDITY" in out and "ok after repair" in out
    ul = uidlist(alice)
    assert ul.uidvalidity != old_uv, "a lost uidlist must not let clients reuse cached UIDs"
    assert len(ul.entries) == 3
    assert run(cfg, capsys)[0] == 0


def test_duplicate_uid_repaired_with_new_uidvalidity(
    setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, store = setup
    bob = store.user("bob")
    ul = uidlist(bob)
    keys = sorted(ul.entries, key=lambda k: ul.entries[k])
    (bob.path / "dovecot-uidlist").write_text(
        f"3 V{ul.uidvalidity} N{ul.uidnext} G0\n1 :{keys[0]}\n2 :{keys[1]}\n2 :{keys[2]}\n"
    )
    rc, out = run(cfg, capsys, "bob")
    assert rc == 1
    assert "alice" not in out, "only the logins given are checked"
    assert "duplicate" in out.lower()
    rc, out = run(cfg, capsys, "--repair", "bob")
    assert rc == 0, out
    fixed = uidlist(bob)
    assert fixed.uidvalidity > ul.uidvalidity
    uids = list(fixed.entries.values())
    assert len(uids) == 3 and len(set(uids)) == 3
    assert max(uids) < fixed.uidnext
    assert run(cfg, capsys, "bob")[0] == 0


def test_dropped_file_entry_removed_json(
    setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, store = setup
    alice = store.user("alice")
    before = uidlist(alice)
    victim = sorted(os.listdir(alice.path / "cur"))[0]
    os.unlink(alice.path / "cur" / victim)
    rc, out = run(cfg, capsys, "--json", "alice")
    assert rc == 1
    data = json.loads(out)
    assert data["with_problems"] == 1
    inbox = next(f for f in data["users"][0]["folders"] if f["name"] == "INBOX")
    assert any("without a file" in p for p in inbox["problems"])
    rc, out = run(cfg, capsys, "--json", "--repair", "alice")
    assert rc == 0, out
    data = json.loads(out)
    assert data["users"][0]["ok_after_repair"] is True
    after = uidlist(alice)
    assert after.uidvalidity == before.uidvalidity, "dropping a missing entry keeps UIDs valid"
    assert len(after.entries) == 2
    assert {k: v for k, v in before.entries.items() if k in after.entries} == after.entries


def test_bad_login_exits_2(setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = setup
    rc, out = run(cfg, capsys, "../etc")
    assert rc == 2
    assert "not a valid store login" in out


def test_unknown_login_is_a_problem(
    setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = setup
    rc, out = run(cfg, capsys, "carol")
    assert rc == 1
    assert "mailbox directory missing" in out


@pytest.mark.parametrize(
    ("lang", "want"),
    [("ru", ["пользователь alice: ЕСТЬ ПРОБЛЕМЫ", "uidlist отсутствует", "папка 'INBOX': писем: 3, в new/: 0"]),
     ("kk", ["alice пайдаланушысы: АҚАУЛАР БАР", "uidlist жоқ", "'INBOX' қалтасы: хаттар саны 3, new/ ішінде 0"])],
)
def test_diagnostic_lines_in_the_operators_language(
    setup: tuple[Path, MaildirStore], capsys: pytest.CaptureFixture[str], lang: str, want: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg, store = setup
    monkeypatch.setenv("ESAM_LANG", lang)
    os.unlink(store.user("alice").path / "dovecot-uidlist")
    capsys.readouterr()
    assert main(["-c", str(cfg), "store", "check", "alice"]) == 1
    out = capsys.readouterr().out
    missing = [w for w in want if w not in out]
    assert not missing, out
    rc, out = run(cfg, capsys, "alice", "--json")  # the JSON stays English (a program reads it)
    assert rc == 1 and "uidlist missing" in json.dumps(json.loads(out))
