"""``esam backup`` / ``esam restore``: the directory as JSON plus the files, in one tar.gz.

Archive layout::

    manifest.json      format, esam_mail version, time, domain, revision, counts
    directory.json     every table of the directory database (``directory.dump``)
    data/...           the data directory: mail store, queue, DKIM keys, TLS files,
                       hybrid-mail state ... (see EXCLUDED)
    store/...          the mail store, only when ``store.path`` lies outside data_dir

Left out (rebuilt or meaningless after a restore): the SQLite directory file itself
(it is in directory.json, consistent), ``run/``, files inside ``tmp/`` folders,
lock files, the store's ``.esam-locks/``, spool ``lock/`` and the per-folder metadata caches ``esam-cache.sqlite*``.

A backup of a running server is safe: message files never change once written,
and a file that vanishes while the archive is written (expunged, delivered) is
skipped.  For a point-in-time copy of everything, stop the server or back up a
filesystem snapshot.

``restore`` refuses a target that already holds mailboxes, mail or queued
messages unless ``force``; it then replaces the data directory and rebuilds the
database (schema at the backup's revision, rows, then migrations to the latest).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esam_mail import __version__, fsio
from esam_mail.config import Config
from esam_mail.directory import dump
from esam_mail.store.uidlist import LOCK_SOURCES  # the store's dotlock sources, at any depth

FORMAT = 1
EXCLUDED_DIRS = {"run"}
EXCLUDED_PREFIXES = ("esam-cache.sqlite",)
EXCLUDED_SUFFIXES = (".lock",)

Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


class RestoreRefused(Exception):
    """The target is not empty (and ``force`` was not given)."""


def _sqlite_file(cfg: Config) -> Path | None:
    url = cfg.directory_url
    if url.startswith("sqlite") and "///" in url:
        path = url.split("///", 1)[1]
        return Path(path).absolute() if path and path != ":memory:" else None
    return None


def _excluded(rel: Path, is_dir: bool, skip: set[Path]) -> bool:
    if rel in skip:
        return True
    if is_dir:
        return (len(rel.parts) == 1 and rel.name in EXCLUDED_DIRS) or rel.name == LOCK_SOURCES
    name = rel.name
    if name.startswith(EXCLUDED_PREFIXES) or name.endswith(EXCLUDED_SUFFIXES):
        return True
    parent = rel.parent.name
    return parent == "tmp" or (parent == "lock" and rel.parent.parent.name == "queue")


def _walk(root: Path, skip: set[Path]) -> Iterator[tuple[Path, Path]]:
    """``(absolute, relative)`` of every directory and file to back up under ``root``."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_base = base.relative_to(root)
        keep = []
        for d in sorted(dirnames):
            rel = rel_base / d
            if not _excluded(rel, True, skip) and not (base / d).is_symlink():
                keep.append(d)
                yield base / d, rel
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = rel_base / f
            if not _excluded(rel, False, skip):
                yield base / f, rel


def _roots(cfg: Config) -> list[tuple[str, Path, set[Path]]]:
    data = cfg.data_dir
    skip: set[Path] = set()
    db = _sqlite_file(cfg)
    if db is not None and data in db.parents:
        rel = db.relative_to(data)
        skip |= {rel, rel.with_name(rel.name + "-wal"), rel.with_name(rel.name + "-shm"),
                 rel.with_name(rel.name + "-journal")}
    roots = [("data", data, skip)]
    store = cfg.store_path
    if store != data and data not in store.parents:
        roots.append(("store", store, set()))
    return roots


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


@dataclass
class BackupReport:
    files: int = 0
    bytes: int = 0
    tables: dict[str, int] = field(default_factory=dict)


def backup(cfg: Config, output: Path, progress: Progress = _no_progress) -> BackupReport:
    """Write the backup archive to ``output`` (atomically and durably, see :mod:`esam_mail.fsio`)."""
    data = asyncio.run(dump.dump(cfg.directory_url))
    report = BackupReport(tables={k: len(v["rows"]) for k, v in data["tables"].items()})
    manifest = {
        "format": FORMAT, "version": __version__, "created": time.time(), "domain": cfg.mail.domain,
        "revision": data["revision"], "tables": report.tables,
        "roots": [name for name, _, _ in _roots(cfg)],
    }
    entries = [(name, p, rel) for name, root, skip in _roots(cfg) for p, rel in _walk(root, skip)]
    files = [e for e in entries if not e[1].is_dir()]
    done = 0
    progress(0, len(files))
    with fsio.atomic_file(output) as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=1).encode())
        _add_bytes(tar, "directory.json", json.dumps(data, ensure_ascii=False).encode())
        for name, path, rel in entries:
            try:
                if path.is_dir():
                    tar.add(path, f"{name}/{rel}", recursive=False)
                    continue
                tar.add(path, f"{name}/{rel}", recursive=False)
                report.bytes += path.stat().st_size
            except FileNotFoundError:  # vanished while we were walking: fine
                pass
            else:
                report.files += 1
                done += 1
                progress(done, len(files))
    return report


def target_holds_data(cfg: Config) -> list[str]:
    """What a restore would overwrite (empty list: the target is empty)."""
    found = []
    mailboxes = asyncio.run(dump.count_rows(cfg.directory_url, "mailboxes")) or 0
    store = cfg.store_path
    # `esam init` makes the operator mailbox for the role aliases: while it has no mail
    # it is part of an empty install, not data a restore would lose
    operator = cfg.aliases.operator_mailbox.strip().lower()
    # users' maildirs (a dot directory such as .esam-locks holds no mail)
    maildirs = [p for p in (store.iterdir() if store.is_dir() else ()) if p.is_dir() and not p.name.startswith(".")]
    fresh_operator = mailboxes == 1 and _without_mail(store / operator) and not any(
        p.name != operator for p in maildirs)
    if mailboxes and not fresh_operator:
        found.append(f"{mailboxes} mailboxes in the directory")
    if maildirs and not fresh_operator:
        found.append(f"mail in {store}")
    env = cfg.data_dir / "queue" / "env"
    if env.is_dir() and any(env.iterdir()):
        found.append(f"queued messages in {env.parent}")
    return found


def _without_mail(maildir: Path) -> bool:
    """True if ``maildir`` holds no message in any folder (or does not exist)."""
    if not maildir.is_dir():
        return True
    return not any(sub.is_file() and sub.parent.name in ("new", "cur") for sub in maildir.rglob("*"))


@dataclass
class RestoreReport:
    files: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def _safe_members(tar: tarfile.TarFile, prefix: str) -> list[tarfile.TarInfo]:
    out = []
    for m in tar.getmembers():
        if m.name.startswith(prefix + "/") and (m.isfile() or m.isdir()):
            out.append(m)
    return out


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path) -> None:
    """``tar.extract(m, dest, filter="data")``; on a Python without extraction filters
    (before 3.11.4: Debian 12 ships 3.11.2) the same rules by hand for the regular files and
    folders ``_safe_members`` lets through: inside ``dest``, no owner from the archive, no
    set-id/sticky bits or group/other write."""
    if hasattr(tarfile, "data_filter"):
        tar.extract(m, dest, filter="data")
        return
    root = dest.resolve()
    target = (root / m.name).resolve()
    if os.path.isabs(m.name) or (target != root and root not in target.parents):
        raise ValueError(f"backup member outside the target folder: {m.name!r}")
    tar.extract(m, dest, set_attrs=False)
    if m.isfile():
        os.chmod(target, (m.mode & 0o755) | 0o600)
        os.utime(target, (m.mtime, m.mtime))


def restore(cfg: Config, archive: Path, *, force: bool = False, progress: Progress = _no_progress) -> RestoreReport:
    """Restore ``archive`` into the data directory and database of ``cfg``.

    Raises:
        RestoreRefused: the target holds data and ``force`` is False.
        ValueError: not an esam_mail backup, or an unknown format.
    """
    with tarfile.open(archive, "r:gz") as tar:
        try:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            data = json.load(tar.extractfile("directory.json"))  # type: ignore[arg-type]
        except (KeyError, json.JSONDecodeError):
            raise ValueError(f"{archive} is not an esam_mail backup") from None
        if manifest.get("format") != FORMAT:
            raise ValueError(f"unknown backup format {manifest.get('format')!r}")
        found = target_holds_data(cfg)
        if found and not force:
            raise RestoreRefused("; ".join(found))
        report = RestoreReport(manifest=manifest)
        targets = {"data": cfg.data_dir, "store": cfg.store_path}
        members = {name: _safe_members(tar, name) for name in targets}
        total = sum(1 for ms in members.values() for m in ms if m.isfile())
        progress(0, total)
        for name, dest in targets.items():
            if not members[name]:
                continue
            if force and dest.exists():
                keep = _sqlite_file(cfg)
                for child in dest.iterdir():
                    if keep is not None and child.name.startswith(keep.name) and child.parent == keep.parent:
                        continue  # the database is rebuilt below
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
            for m in members[name]:
                m.name = m.name[len(name) + 1:]
                _extract(tar, m, dest)
                if m.isfile():
                    report.files += 1
                    progress(report.files, total)
            # directories come first in the archive: put their modes back last
            for m in members[name]:
                if m.isdir():
                    os.chmod(dest / m.name, m.mode & 0o777)
    report.tables = dump.load(cfg.directory_url, data)
    return report
