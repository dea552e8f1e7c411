"""Migration in (Dovecot passwd-file + Maildir) and out (mbox or Maildir) of esam_mail.

Import (``esam import``):

* ``passwd-file`` lines are ``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra``
  (doc.dovecot.org, "Passwd-file"); ``user`` may be ``name`` or ``name@domain``.  The
  hash is stored **as is**: ``{SHA512-CRYPT}``, ``{BLF-CRYPT}``, ``{ARGON2ID}``,
  ``{SSHA512}`` ... keep working through ``directory.passwords`` and are replaced by
  an argon2id hash at the first successful login.
* Each user's Maildir is looked up under ``--maildir DIR`` as ``DIR/<domain>/<name>/Maildir``,
  ``DIR/<domain>/<name>``, ``DIR/<name>/Maildir``, ``DIR/<name>``, ``DIR/<user>``, and
  then under the passwd-file home (``<home>/Maildir``, ``<home>``).
* Folders are Maildir++: the root is INBOX, ``.A.B`` is ``A/B`` (names in modified
  UTF-7, as Dovecot writes them).  Messages in ``new/`` arrive unseen; messages in
  ``cur/`` keep the flags of their ``:2,`` suffix, keyword letters translated through
  the folder's ``dovecot-keywords``; the file's mtime becomes the internal date.
  Messages get new UIDs (clients resynchronise once); imports ignore the quota.
* A login that already exists is skipped, so a second run adds nothing twice.

Export (``esam export``): ``maildir`` writes a Maildir++ tree (flags and keywords kept,
file mtimes = internal dates) that Dovecot or mutt read directly; ``mbox`` writes one
mboxrd file per folder (``From`` quoting, LF line ends; flags are not kept).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esam_mail.errors import FolderExists, LoginTaken
from esam_mail.i18n import Message
from esam_mail.store import names
from esam_mail.store.maildir import CHAR_TO_FLAG, FLAG_TO_CHAR, LOGIN_RE

Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class PasswdEntry:
    """One passwd-file user."""

    user: str
    local: str
    domain: str
    password_hash: str
    home: str
    line: int


def parse_passwd_file(text: str) -> list[PasswdEntry]:
    """Parse a Dovecot passwd-file; blank lines and ``#`` comments are skipped.

    Raises:
        ValueError: a line without a user name or password field (names the line).
    """
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 2 or not fields[0]:
            raise ValueError(f"line {n}: expected user:password:...")
        fields += [""] * (8 - len(fields))
        user = fields[0]
        local, _, domain = user.rpartition("@") if "@" in user else (user, "", "")
        out.append(PasswdEntry(user=user, local=local, domain=domain.lower(), password_hash=fields[1],
                               home=fields[5], line=n))
    return out


def find_maildir(root: Path | None, entry: PasswdEntry, domain: str) -> Path | None:
    """The entry's Maildir (a directory with ``cur/``), or None."""
    cands: list[Path] = []
    if root is not None:
        dom = entry.domain or domain
        cands += [root / dom / entry.local / "Maildir", root / dom / entry.local,
                  root / entry.local / "Maildir", root / entry.local, root / entry.user]
    if entry.home:
        cands += [Path(entry.home) / "Maildir", Path(entry.home)]
    for c in cands:
        if (c / "cur").is_dir():
            return c
    return None


def dovecot_folder_name(dirname: str) -> str | None:
    """``.Projects.2026`` -> ``Projects/2026`` (Maildir++ with modified UTF-7), else None."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    parts = dirname[1:].split(".")
    if any(not p for p in parts):
        return None
    decoded = []
    for p in parts:
        try:
            decoded.append(names.mutf7_decode(p))
        except (ValueError, UnicodeDecodeError):
            decoded.append(p)
    if decoded[0].upper() == "INBOX" and len(decoded) > 1:
        decoded = decoded[1:]  # namespace prefix "INBOX." layouts
    return "/".join(decoded)


def source_folders(maildir: Path) -> list[tuple[str, Path]]:
    """``[("INBOX", root), ("Sent", root/.Sent), ...]`` of a Maildir++ tree."""
    out = [("INBOX", maildir)]
    for e in sorted(os.scandir(maildir), key=lambda e: e.name):
        if e.is_dir(follow_symlinks=False) and (Path(e.path) / "cur").is_dir():
            name = dovecot_folder_name(e.name)
            if name is not None:
                out.append((name, Path(e.path)))
    return out


def _keyword_letters(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = (folder / "dovecot-keywords").read_text("utf-8", "replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        idx, _, kw = line.partition(" ")
        if idx.isdigit() and kw and int(idx) < 26:
            out[chr(ord("a") + int(idx))] = kw
    return out


def flags_of(filename: str, keywords: dict[str, str]) -> list[str]:
    """IMAP flags of a Maildir file name's ``:2,`` suffix (unknown letters dropped)."""
    _, sep, info = filename.partition(":2,")
    if not sep:
        return []
    out = []
    for ch in info:
        if ch in CHAR_TO_FLAG:
            out.append(CHAR_TO_FLAG[ch])
        elif ch in keywords:
            out.append(keywords[ch])
    return out


def source_messages(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(file, flags)`` of every message in a source folder, ``new/`` first."""
    keywords = _keyword_letters(folder)
    for sub in ("new", "cur"):
        try:
            entries = sorted(os.listdir(folder / sub))
        except FileNotFoundError:
            continue
        for fn in entries:
            if fn.startswith("."):
                continue
            yield folder / sub / fn, (flags_of(fn, keywords) if sub == "cur" else [])


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (user, reason)
    folders: int = 0
    messages: int = 0
    bytes: int = 0


def copy_maildir(src: Path, user: Any, report: ImportReport, tick: Callable[[], None]) -> None:
    """Append every message of the Maildir++ tree ``src`` into the store user ``user``."""
    for name, path in source_folders(src):
        canonical = names.normalize(name)
        if canonical != names.INBOX:
            try:
                user.create_folder(canonical)
            except FolderExists:
                pass
            user.subscribe(canonical)  # imported folders show in clients that list subscribed ones
        folder = user.folder(canonical)
        report.folders += 1
        for msg, flags in source_messages(path):
            try:
                data = msg.read_bytes()
                mtime = msg.stat().st_mtime
            except FileNotFoundError:  # expunged by a live source server meanwhile
                continue
            folder.append(data, flags, dt.datetime.fromtimestamp(mtime, dt.UTC))
            report.messages += 1
            report.bytes += len(data)
            tick()


async def import_dovecot(
    directory: Any,
    store: Any,
    entries: list[PasswdEntry],
    *,
    maildir_root: Path | None,
    domain: str,
    kind: str = "personal",
    progress: Progress = _no_progress,
) -> ImportReport:
    """Create a mailbox per entry of ``domain`` (hash kept) and copy its Maildir.

    Args:
        directory: ``SqlDirectory``.
        store: ``MaildirStore``.
        entries: from :func:`parse_passwd_file`.
        maildir_root: the ``--maildir`` tree, or None to use the passwd-file homes.
        domain: the source domain; entries of other domains are skipped.
        progress: ``progress(done, total)`` per copied message.
    """
    report = ImportReport()
    todo: list[tuple[PasswdEntry, str, Path | None]] = []
    for e in entries:
        if e.domain and e.domain != domain.lower():
            report.skipped.append((e.user, Message("domain {domain} is not {wanted}", domain=e.domain, wanted=domain)))
            continue
        login = e.local.lower()
        if not LOGIN_RE.match(login) or ".." in login:
            report.skipped.append((e.user, Message("not a valid login here")))
            continue
        if not e.password_hash:
            report.skipped.append((e.user, Message("no password hash")))
            continue
        todo.append((e, login, find_maildir(maildir_root, e, domain)))
    total = sum(sum(1 for _ in source_messages(p)) for _, _, md in todo if md for _, p in source_folders(md))
    done = 0
    progress(0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    for e, login, md in todo:
        try:
            rec = await directory.create_mailbox(login, e.password_hash, kind=kind,
                                                 actor=("sysadmin", "import"))
        except LoginTaken:
            report.skipped.append((e.user, Message("login exists")))
            if md:  # keep the progress total honest
                for _, p in source_folders(md):
                    for _ in source_messages(p):
                        tick()
            continue
        user = store.user(rec.login_norm, 0)  # imports are not held to the quota
        user.create()
        report.created.append(rec.login_norm)
        if md is not None:
            copy_maildir(md, user, report, tick)
    return report


# -- export --------------------------------------------------------------------------------

_FROM_RE = re.compile(rb"^(>*From )", re.M)


def _folder_messages(user: Any) -> Iterator[tuple[str, Any, list[Any]]]:
    for info in user.list_folders():
        if info.noselect:
            continue
        folder = user.folder(info.name)
        yield info.name, folder, folder.sync()


def count_messages(user: Any) -> int:
    return sum(len(msgs) for _, _, msgs in _folder_messages(user))


def _envelope_sender(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"(?im)^Return-Path:\s*<([^>\s]*)>", head)
    sender = m.group(1).decode("ascii", "replace") if m and m.group(1) else ""
    return sender or "MAILER-DAEMON"


def mbox_entry(data: bytes, when: dt.datetime) -> bytes:
    """One mboxrd message: ``From`` line, quoted body, LF line ends, blank line after."""
    body = data.replace(b"\r\n", b"\n")
    body = _FROM_RE.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    stamp = when.astimezone(dt.UTC).strftime("%a %b %d %H:%M:%S %Y")
    return f"From {_envelope_sender(data)} {stamp}\n".encode() + body + b"\n"


def _mbox_path(out: Path, name: str) -> Path:
    parts = [p.replace(os.sep, "_") for p in name.split("/")]
    return out.joinpath(*parts[:-1], parts[-1] + ".mbox")


def _dovecot_dirname(name: str) -> str:
    return "." + ".".join(names.mutf7_encode(p) for p in name.split("/"))


@dataclass
class ExportReport:
    folders: int = 0
    messages: int = 0
    bytes: int = 0


def export_user(user: Any, out: Path, fmt: str, progress: Progress = _no_progress) -> ExportReport:
    """Write every folder of ``user`` under ``out`` as ``mbox`` files or a Maildir++ tree.

    Raises:
        FileExistsError: ``out`` exists and is not an empty directory.
        ValueError: unknown format.
    """
    if fmt not in ("mbox", "maildir"):
        raise ValueError(fmt)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(str(out))
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    folders = list(_folder_messages(user))
    total = sum(len(m) for _, _, m in folders)
    report = ExportReport()
    progress(0, total)
    for name, folder, msgs in folders:
        report.folders += 1
        if fmt == "mbox":
            path = _mbox_path(out, name)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(path, "wb") as f:
                for info in msgs:
                    data = folder.read(info.uid)
                    f.write(mbox_entry(data, info.internal_date))
                    report.messages += 1
                    report.bytes += len(data)
                    progress(report.messages, total)
            continue
        target = out if name == names.INBOX else out / _dovecot_dirname(name)
        for sub in ("cur", "new", "tmp"):
            (target / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        if name != names.INBOX:
            (target / "maildirfolder").touch(mode=0o600)
        letters: dict[str, str] = {}
        for info in msgs:
            data = folder.read(info.uid)
            chars = {FLAG_TO_CHAR[f] for f in info.flags if f in FLAG_TO_CHAR}
            for kw in sorted(f for f in info.flags if not f.startswith("\\")):
                if kw not in letters and len(letters) < 26:
                    letters[kw] = chr(ord("a") + len(letters))
                if kw in letters:
                    chars.add(letters[kw])
            path = target / "cur" / f"{info.key}:2,{''.join(sorted(chars))}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            ts = info.internal_date.timestamp()
            os.utime(path, (ts, ts))
            report.messages += 1
            report.bytes += len(data)
            progress(report.messages, total)
        if letters:
            (target / "dovecot-keywords").write_text(
                "".join(f"{ord(letter) - ord('a')} {kw}\n" for kw, letter in letters.items()))
    return report
