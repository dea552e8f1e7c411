"""`esam backup` / `esam restore`: back up, wipe, restore; every message and login is back.

Runs on SQLite and, when ``ESAM_TEST_PG_URL`` is set, on PostgreSQL (restored into a
fresh database, which also checks that id sequences move past the restored rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esam_mail import app, config
from esam_mail.cli import main
from esam_mail.store.maildir import MaildirStore
from tests.conftest import write_config

USERS = {"alice": "alice password", "bob": "bob password"}


@contextlib.contextmanager
def database(kind: str) -> Iterator[dict[str, Any]]:
    if kind == "sqlite":
        yield {}
        return
    from tests.unit.registration.conftest import PgDatabase

    with PgDatabase() as url:
        yield {"directory": {"url": url}}


def make_cfg(root: Path, db: dict[str, Any]) -> config.Config:
    root.mkdir(parents=True, exist_ok=True)
    return config.load(write_config(root, **db))


async def populate(cfg: config.Config) -> None:
    svc = app.build(cfg)
    try:
        for login, pw in USERS.items():
            rec = await svc.directory.create_mailbox(login, svc.hasher.hash(pw), kind="personal")
            user = svc.store.user(rec.login_norm)
            user.create()
            user.deliver(f"Subject: hello {login}\r\n\r\nbody\r\n".encode())
            user.folder("Sent").append(b"Subject: sent\r\n\r\n\xd0\x9f\xd1\x80\xd0\xb8\r\n", ["\\Seen", "Work"])
            user.create_folder("Projects/2026")
            user.folder("Projects/2026").append(b"Subject: p\r\n\r\nx\r\n", ["\\Flagged"])
        svc.spool.enqueue("alice@esam.test", ["x@remote.example"], b"Subject: queued\r\n\r\nq\r\n")
        await svc.directory.audit("sysadmin", "test", "test.event", "alice@esam.test", note="kept")
    finally:
        svc.notifier.close()
        await svc.close()
    hybrid = cfg.data_dir / "hybrid" / "batches"
    hybrid.mkdir(parents=True, exist_ok=True)
    (hybrid / "test-b1.json").write_text('{"state": "printed"}')


def snapshot(cfg: config.Config) -> dict[str, Any]:
    store = MaildirStore(cfg.store_path)
    mail = {}
    for login in USERS:
        user = store.user(login)
        for info in user.list_folders():
            if info.noselect:
                continue
            f = user.folder(info.name)
            mail[(login, info.name)] = sorted((f.read(i.uid), sorted(i.flags)) for i in f.sync())
    files = {str(p.relative_to(cfg.data_dir)): p.read_bytes()
             for sub in ("dkim", "queue/env", "queue/msg", "hybrid", "tls")
             for p in sorted((cfg.data_dir / sub).rglob("*")) if p.is_file()}
    return {"mail": mail, "files": files}


async def logins_work(cfg: config.Config) -> list[str]:
    svc = app.build(cfg)
    try:
        ok = []
        for login, pw in USERS.items():
            p = await svc.authenticator.authenticate(login, pw, peer="127.0.0.1", service="imap")
            ok.append(p.login)
        # the restored id sequences let new rows in
        await svc.directory.create_mailbox("carol", svc.hasher.hash("carol password"))
        events = await svc.directory.audit_list(target="alice@esam.test", action="test.*")
        assert [e.detail for e in events] == [{"note": "kept"}]
        return ok
    finally:
        svc.notifier.close()
        await svc.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_backup_wipe_restore_round_trip(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with database(kind) as db:
        cfg = make_cfg(tmp_path / "a", db)
        app.init(cfg)
        asyncio.run(populate(cfg))
        before = snapshot(cfg)
        assert len(before["mail"]) == 2 * 8 and before["files"]
        archive = tmp_path / "esam-backup.tar.gz"
        assert main(["-c", cfg.source, "backup", "--output", str(archive)]) == 0
        out, errs = capsys.readouterr()
        assert out.startswith(f"backup {archive}:") and errs == ""
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        assert "manifest.json" in names and "directory.json" in names
        assert not [n for n in names if n.endswith("directory.db") or "esam-cache.sqlite" in n
                    or n.startswith("data/run/") or ".esam-locks" in n]  # dotlock sources
        dumped = archive.read_bytes()
        assert b"alice password" not in dumped  # hashes only

    with database(kind) as db2:
        target = make_cfg(tmp_path / "b", db2)  # a wiped machine: nothing there at all
        assert not target.data_dir.exists()
        assert main(["-c", target.source, "restore", str(archive)]) == 0
        assert capsys.readouterr().out.startswith(f"restored {archive}:")
        after = snapshot(target)
        assert after["mail"] == before["mail"]
        assert after["files"] == before["files"]
        assert asyncio.run(logins_work(target)) == ["alice", "bob"]

        # the target now holds data: a second restore is refused, unless forced
        assert main(["-c", target.source, "restore", str(archive)]) == 1
        assert "refusing to overwrite" in capsys.readouterr().err
        MaildirStore(target.store_path).user("alice").deliver(b"Subject: extra\r\n\r\nnew\r\n")
        assert main(["-c", target.source, "restore", "--force", str(archive)]) == 0
        assert snapshot(target)["mail"] == before["mail"]


def test_restore_rejects_a_file_that_is_not_a_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(tmp_path / "a", {})
    bogus = tmp_path / "x.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        tar.add(__file__, "something.py")
    assert main(["-c", cfg.source, "restore", str(bogus)]) == 1
    assert "not an esam_mail backup" in capsys.readouterr().err
    (tmp_path / "plain.txt").write_text("hi")
    assert main(["-c", cfg.source, "restore", str(tmp_path / "plain.txt")]) == 1
    shutil.rmtree(tmp_path / "a")


@pytest.mark.postgres
def test_sqlite_backup_restores_into_postgresql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(tmp_path / "a", {})
    app.init(cfg)
    asyncio.run(populate(cfg))
    before = snapshot(cfg)
    archive = tmp_path / "b.tar.gz"
    assert main(["-c", cfg.source, "backup", "--output", str(archive)]) == 0
    with database("postgres") as db:
        target = make_cfg(tmp_path / "b", db)
        assert main(["-c", target.source, "restore", str(archive)]) == 0
        assert snapshot(target)["mail"] == before["mail"]
        assert asyncio.run(logins_work(target)) == ["alice", "bob"]


def test_restore_works_without_tarfile_filters_as_on_debian_12(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Python before 3.11.4 (Debian 12's 3.11.2) has no ``filter=`` for extract: same result."""
    import tarfile

    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    test_backup_wipe_restore_round_trip(tmp_path, "sqlite", capsys)


def test_fallback_extract_refuses_a_member_outside_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import tarfile

    from esam_mail.services.ops.backup import _extract

    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 2
        info.mode = 0o4777
        tar.addfile(info, io.BytesIO(b"hi"))
        ok = tarfile.TarInfo("inside")
        ok.size = 2
        ok.mode = 0o4777
        tar.addfile(ok, io.BytesIO(b"ok"))
    buf.seek(0)
    dest = tmp_path / "dest"
    dest.mkdir()
    with tarfile.open(fileobj=buf) as tar:
        bad, good = tar.getmembers()
        with pytest.raises(ValueError, match="outside"):
            _extract(tar, bad, dest)
        _extract(tar, good, dest)
    assert not (tmp_path / "escaped").exists()
    assert (dest / "inside").read_bytes() == b"ok"
    assert (dest / "inside").stat().st_mode & 0o7777 == 0o755
