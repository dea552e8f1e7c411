"""`esam import` (Dovecot passwd-file + Maildir) and `esam export` (maildir, mbox)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import mailbox
import os
from pathlib import Path
from typing import Any

import pytest
from passlib.hash import argon2, bcrypt, sha512_crypt

from esam_mail import app, config
from esam_mail.cli import main
from esam_mail.errors import AuthError
from esam_mail.services.ops import migrate
from esam_mail.store.maildir import MaildirStore
from tests.conftest import write_config

PASSWORDS = {"alice": "alice pw 1", "bob": "bob pw 22", "carol": "carol pw 333", "dave": "dave pw 4444"}
MTIME = 1_700_000_000


def ssha512(pw: str, salt: bytes = b"saltsalt") -> str:
    return "{SSHA512}" + base64.b64encode(hashlib.sha512(pw.encode() + salt).digest() + salt).decode()


def passwd_file() -> str:
    return "\n".join([
        "# Dovecot users",
        f"alice:{{SHA512-CRYPT}}{sha512_crypt.hash(PASSWORDS['alice'], rounds=5000)}:1000:1000::/home/alice::",
        f"bob@esam.test:{{BLF-CRYPT}}{bcrypt.using(rounds=4, ident='2y').hash(PASSWORDS['bob'])}:1001:1001::::",
        f"carol:{{ARGON2ID}}{argon2.using(type='ID', memory_cost=2048, rounds=1, parallelism=1).hash(PASSWORDS['carol'])}"
        ":1002:1002::::userdb_quota_rule=*:storage=1G",
        f"dave:{ssha512(PASSWORDS['dave'])}:1003:1003::::",
        "eve@other.example:{PLAIN}secret:1004:1004::::",
        "",
    ])


def msg(subject: str, extra: str = "") -> bytes:
    return (f"From: x@example.org\r\nTo: alice@esam.test\r\nSubject: {subject}\r\n{extra}\r\n"
            f"Body of {subject}\r\nFrom the start of a line\r\n").encode()


def put(folder: Path, sub: str, name: str, data: bytes) -> None:
    for s in ("cur", "new", "tmp"):
        (folder / s).mkdir(parents=True, exist_ok=True)
    p = folder / sub / name
    p.write_bytes(data)
    os.utime(p, (MTIME, MTIME))


def dovecot_tree(root: Path) -> dict[str, list[tuple[bytes, set[str]]]]:
    """alice's Maildir++ as Dovecot writes it; returns folder -> [(bytes, flags)]."""
    md = root / "esam.test" / "alice" / "Maildir"
    put(md, "new", "1700000000.M1P1.old", msg("new one"))
    put(md, "cur", "1700000001.M2P1.old,S=100:2,S", msg("seen"))
    put(md, "cur", "1700000002.M3P1.old:2,FSa", msg("flagged fwd"))
    (md / "dovecot-keywords").write_text("0 $Forwarded\n")
    put(md / ".Sent", "cur", "1700000003.M4P1.old:2,RS", msg("sent one"))
    (md / ".Sent" / "maildirfolder").touch()
    put(md / ".Projects.2026", "cur", "1700000004.M5P1.old:2,", msg("project"))
    put(md / ".&BBoEPgRABDcEOAQ9BDA-", "cur", "1700000005.M6P1.old:2,T", msg("trash"))
    put(root / "esam.test" / "bob" / "Maildir", "cur", "1700000006.M7P1.old:2,S", msg("bob's"))
    return {
        "INBOX": [(msg("new one"), set()), (msg("seen"), {"\\Seen"}),
                  (msg("flagged fwd"), {"\\Flagged", "\\Seen", "$Forwarded"})],
        "Sent": [(msg("sent one"), {"\\Answered", "\\Seen"})],
        "Projects/2026": [(msg("project"), set())],
        "Корзина": [(msg("trash"), {"\\Deleted"})],
    }


@pytest.fixture
def setup(tmp_path: Path) -> tuple[config.Config, Path, Path, dict[str, Any]]:
    cfg = config.load(write_config(tmp_path))
    app.init(cfg)
    src = tmp_path / "dovecot"
    expected = dovecot_tree(src)
    pw = tmp_path / "users.passwd"
    pw.write_text(passwd_file())
    return cfg, src, pw, expected


def folder_contents(user: Any, name: str) -> list[tuple[bytes, set[str], float]]:
    f = user.folder(name)
    return sorted((f.read(i.uid), set(i.flags), i.internal_date.timestamp()) for i in f.sync())


def test_import_creates_mailboxes_copies_mail_and_keeps_flags(
    setup: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, src, pw, expected = setup
    rc = main(["-c", cfg.source, "import", "--passwd-file", str(pw), "--maildir", str(src), "--domain", "esam.test"])
    out, errs = capsys.readouterr()
    assert rc == 0
    # not a terminal: no progress bar, one summary line, skips named on stderr
    size = sum(len(m) for f in expected.values() for m, _ in f) + len(msg("bob's"))
    assert out.strip().splitlines() == [f"imported 4 mailboxes, 5 folders, 7 messages ({size} bytes); skipped 1"]
    assert "\r" not in errs and "skipped eve@other.example: domain other.example" in errs
    user = MaildirStore(cfg.store_path).user("alice")
    names = {f.name for f in user.list_folders()}
    assert {"INBOX", "Sent", "Projects", "Projects/2026", "Корзина", "Drafts", "Trash"} <= names
    for folder, msgs in expected.items():
        assert folder_contents(user, folder) == sorted((m, f, float(MTIME)) for m, f in msgs), folder
    assert [m for m, _, _ in folder_contents(MaildirStore(cfg.store_path).user("bob"), "INBOX")] == [msg("bob's")]

    # a second run adds nothing twice
    assert main(["-c", cfg.source, "import", "--passwd-file", str(pw), "--maildir", str(src)]) == 0
    out, errs = capsys.readouterr()
    assert out.startswith("imported 0 mailboxes") and "skipped alice: login exists" in errs
    # the reason in the operator's language
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESAM_LANG", "ru")
        assert main(["-c", cfg.source, "import", "--passwd-file", str(pw), "--maildir", str(src)]) == 0
    assert "alice: логин уже существует" in capsys.readouterr().err
    assert len(folder_contents(user, "INBOX")) == 3


def test_imported_hashes_work_and_are_rehashed_to_argon2id(setup: Any) -> None:
    cfg, src, pw, _ = setup
    assert main(["-c", cfg.source, "import", "--passwd-file", str(pw), "--maildir", str(src)]) == 0

    async def go() -> dict[str, tuple[str, str]]:
        svc = app.build(cfg)
        try:
            out = {}
            for login, password in PASSWORDS.items():
                before = (await svc.directory.get(login)).password_hash
                with pytest.raises(AuthError):
                    await svc.authenticator.authenticate(login, "wrong " + password, peer="127.0.0.9",
                                                         service="imap")
                assert (await svc.directory.get(login)).password_hash == before
                principal = await svc.authenticator.authenticate(f"{login}@esam.test", password,
                                                                 peer="127.0.0.1", service="imap")
                assert principal.login == login
                out[login] = (before, (await svc.directory.get(login)).password_hash)
            return out
        finally:
            svc.notifier.close()
            await svc.close()

    hashes = asyncio.run(go())
    assert hashes["alice"][0].startswith("{SHA512-CRYPT}$6$")
    assert hashes["bob"][0].startswith("{BLF-CRYPT}$2y$")
    assert hashes["carol"][0].startswith("{ARGON2ID}$argon2id$")
    assert hashes["dave"][0].startswith("{SSHA512}")
    for login, (_, after) in hashes.items():
        assert after.startswith("$argon2id$"), login


def test_export_maildir_and_mbox_round_trip(setup: Any, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg, src, pw, expected = setup
    assert main(["-c", cfg.source, "import", "--passwd-file", str(pw), "--maildir", str(src)]) == 0
    capsys.readouterr()
    out = tmp_path / "export-md"
    assert main(["-c", cfg.source, "export", "alice@esam.test", "--format", "maildir", "--output", str(out)]) == 0
    assert capsys.readouterr().out.startswith("exported 9 folders, 6 messages")
    # reading the export back as a Dovecot tree gives the same messages, flags and dates
    for name, path in migrate.source_folders(out):
        got = sorted((p.read_bytes(), set(flags), p.stat().st_mtime) for p, flags in migrate.source_messages(path))
        assert got == sorted((m, f, float(MTIME)) for m, f in expected.get(name, [])), name
    assert (out / ".&BBoEPgRABDcEOAQ9BDA-" / "maildirfolder").exists()

    mb = tmp_path / "export-mbox"
    assert main(["-c", cfg.source, "export", "alice", "--format", "mbox", "--output", str(mb)]) == 0
    inbox = mailbox.mbox(str(mb / "INBOX.mbox"))
    subjects = sorted(m["Subject"] for m in inbox)
    assert subjects == ["flagged fwd", "new one", "seen"]
    raw = (mb / "INBOX.mbox").read_bytes()
    assert b"\r\n" not in raw and b"\n>From the start of a line\n" in raw
    assert (mb / "Projects" / "2026.mbox").exists()
    # refuses to write into a non-empty directory
    assert main(["-c", cfg.source, "export", "alice", "--format", "mbox", "--output", str(mb)]) == 2
    assert main(["-c", cfg.source, "export", "nobody", "--format", "mbox", "--output", str(tmp_path / "n")]) == 3


def test_progress_bar_draws_only_on_a_terminal() -> None:
    import io

    from esam_mail.cli.ops import ProgressBar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar("importing", stream)
        for i in range(11):
            bar(i, 10)
        bar.close()
    assert pipe.getvalue() == ""
    assert "\rimporting [" in tty.getvalue() and "10/10 100%" in tty.getvalue()


def test_passwd_file_parsing() -> None:
    entries = migrate.parse_passwd_file("a@x.kz:{PLAIN}p:1:1::/home/a::\n\n# c\nb:{SSHA}zz\n")
    assert [(e.local, e.domain, e.password_hash, e.home) for e in entries] == [
        ("a", "x.kz", "{PLAIN}p", "/home/a"), ("b", "", "{SSHA}zz", "")]
    with pytest.raises(ValueError, match="line 1"):
        migrate.parse_passwd_file(":nouser\n")
