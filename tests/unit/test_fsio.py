"""esam_mail.fsio: the one durable-write module (tmp, fsync, rename, fsync dir)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from esam_mail import fsio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """Modes are asserted below; another test (the CLI sets 077) must not decide them."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record fsync (file or dir) and rename calls, in order."""
    log: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"
        log.append((kind, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        log.append(("rename", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


def leftovers(d: Path, keep: str) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != keep)


def test_atomic_write_order_is_file_fsync_rename_dir_fsync(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    target = tmp_path / "state.json"
    fsio.atomic_write(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [c[0] for c in calls] == ["fsync-file", "rename", "fsync-dir"]
    assert calls[1][1] == str(target) and calls[2][1] == str(tmp_path)
    assert leftovers(tmp_path, "state.json") == []


def test_atomic_write_without_fsync_is_still_atomic(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    fsio.atomic_write(target, b"new", fsync=False)
    assert target.read_bytes() == b"new"
    assert calls == [("rename", str(target))]


def test_failed_write_leaves_old_content_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError, match="No space"):
        fsio.atomic_write(target, b"new content")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path, "f") == []


def test_temp_file_goes_to_tmp_dir_and_never_starts_with_a_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dotted name in a Maildir++ root would be listed as a folder.
    (tmp_path / "tmp").mkdir()
    seen: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (seen.append(os.fspath(s)), real_replace(s, d))[1])
    fsio.atomic_write(tmp_path / "env.json", b"x", tmp_dir=tmp_path / "tmp")
    fsio.atomic_write(tmp_path / "dovecot-uidlist", b"y")
    assert Path(seen[0]).parent == tmp_path / "tmp"
    assert Path(seen[1]).parent == tmp_path
    assert not any(Path(s).name.startswith(".") for s in seen)


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    data = bytes(range(256)) * 10
    fsio.write_file(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data


def test_write_file_is_exclusive_unless_asked(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    target = tmp_path / "key"
    fsio.write_file(target, b"one", sync_dir=True)
    assert [c[0] for c in calls] == ["fsync-file", "fsync-dir"]
    with pytest.raises(FileExistsError):
        fsio.write_file(target, b"two")
    assert target.read_bytes() == b"one"
    fsio.write_file(target, b"2", exclusive=False)
    assert target.read_bytes() == b"2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_file_streams_and_replaces_on_success(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    target = tmp_path / "backup.tar"
    with fsio.atomic_file(target) as fh:
        fh.write(b"part1-")
        assert not target.exists()  # nothing visible until the end
        fh.write(b"part2")
    assert target.read_bytes() == b"part1-part2"
    assert [c[0] for c in calls] == ["fsync-file", "rename", "fsync-dir"]


def test_atomic_file_error_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "backup.tar"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), fsio.atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("disk pulled")
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path, "backup.tar") == []


# The modules that own an fsync of their own, for a reason other than "write a
# file durably": an append-only log under flock, and an in-place counter under flock.
ALLOWED_OWN_FSYNC = {
    "esam_mail/fsio.py",
    "esam_mail/services/hybrid/events.py",  # append one line to a locked log
    "esam_mail/store/maildir.py",  # the uidvalidity counter, rewritten in place under flock
}


def test_no_other_module_hand_rolls_durable_writes() -> None:
    """One way to write a file durably: a new ``os.fsync``/``os.replace`` elsewhere is a copy
    of fsio's logic (and usually misses the directory fsync)."""
    call = re.compile(r"\bos\.(fsync|replace)\b")
    offenders = [
        f"{rel}:{n} os.{m.group(1)}"
        for path in sorted((ROOT / "esam_mail").rglob("*.py"))
        if (rel := path.relative_to(ROOT).as_posix()) not in ALLOWED_OWN_FSYNC
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if (m := call.search(line.split("#", 1)[0]))
    ]
    assert not offenders, offenders
