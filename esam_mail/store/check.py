"""Consistency check and repair of one user's Maildir++ tree (``esam store check``).

Per folder: the uidlist parses; no duplicate UIDs or keys; every UID is below the next
UID (``N``); files listed but missing; files in ``cur/`` without a UID; the same key
present twice in ``cur/``; messages still waiting in ``new/`` (informational).
Per user: ``maildirsize`` agrees with the files.

``repair=True``, under the folder lock: a uidlist that could reuse UIDs (unparsable,
duplicate UIDs, a UID >= ``N``) is rebuilt with a *new* UIDVALIDITY, UIDs renumbered
in their old order; a duplicated key keeps one file (a second hard link is removed, a
different file gets a fresh key and UID); then a normal sync assigns UIDs to unknown
files and drops missing ones; ``maildirsize`` is recalculated.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from esam_mail.i18n import Message
from esam_mail.store.maildir import (
    EXPUNGED_FILE,
    MaildirUser,
    expunged_keys,
    new_key,
    size_from_key,
    split_name,
)
from esam_mail.store.uidlist import UIDLIST, FolderLock, UidList, read_uidlist


@dataclass(slots=True)
class FolderReport:
    name: str
    messages: int = 0
    pending_new: int = 0
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CheckReport:
    login: str
    folders: list[FolderReport] = field(default_factory=list)
    usage_recorded: tuple[int, int] = (0, 0)
    usage_actual: tuple[int, int] = (0, 0)
    problems: list[str] = field(default_factory=list)  # user-level
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not f.problems for f in self.folders)

    def lines(self, say: Callable[[str], str] = str) -> list[str]:
        """Human-readable report (no message content, no paths); ``say`` turns each text (an
        :class:`esam_mail.i18n.Message`) into the reader's language (the CLI's ``say``)."""
        head = (Message("user {login}: ok", login=self.login) if self.ok
                else Message("user {login}: PROBLEMS", login=self.login))
        out = [say(head)]
        out += [f"  {say(p)}" for p in self.problems]
        out += ["  " + say(Message("repaired: {what}", what=r)) for r in self.repaired]
        for f in self.folders:
            out.append("  " + say(Message("folder '{name}': {messages} messages, {pending} in new/",
                                          name=f.name, messages=f.messages, pending=f.pending_new)))
            out += [f"    {say(p)}" for p in f.problems]
            out += ["    " + say(Message("repaired: {what}", what=r)) for r in f.repaired]
        return out


def _check_folder(user: MaildirUser, name: str, repair: bool) -> FolderReport:
    rep = FolderReport(name)
    path = user.folder_path(name)
    try:
        data = (path / UIDLIST).read_bytes()
        try:
            ul: UidList | None = UidList.parse(data)
        except ValueError as exc:
            ul = None
            rep.problems.append(Message("uidlist unparsable: {error}", error=str(exc)))
    except FileNotFoundError:
        ul = None
        rep.problems.append(Message("uidlist missing"))
    if ul is not None:
        rep.problems += ul.problems
    raw_cur = [n for n in os.listdir(path / "cur") if not n.startswith(".")]
    rep.pending_new = sum(1 for n in os.listdir(path / "new") if not n.startswith("."))
    by_key: dict[str, list[str]] = {}
    for fn in raw_cur:
        by_key.setdefault(split_name(fn)[0], []).append(fn)
    dups = {k: v for k, v in by_key.items() if len(v) > 1}
    for k in dups:
        rep.problems.append(Message("key present {n} times in cur/: {key}", n=len(dups[k]), key=k))
    if ul is not None:
        # records of messages this store expunged are kept until the list is next
        # rewritten (maildir._dead_allowed): not lost files
        expunged = expunged_keys(path)
        missing = [k for k in ul.entries if k not in by_key and k not in expunged]
        unknown = [k for k in by_key if k not in ul.entries]
        if missing:
            rep.problems.append(Message("{n} uidlist entries without a file", n=len(missing)))
        if unknown:
            rep.problems.append(Message("{n} files in cur/ without a UID", n=len(unknown)))
    rep.messages = len(by_key)
    if not repair or not rep.problems:
        return rep

    with FolderLock(path, fsync=user.store.fsync, store_root=user.store.root) as lock:
        for key, fns in dups.items():
            keep = max(fns, key=len)
            for fn in fns:
                if fn == keep:
                    continue
                try:
                    same = os.path.samefile(path / "cur" / fn, path / "cur" / keep)
                except FileNotFoundError:
                    continue
                if same:
                    os.unlink(path / "cur" / fn)
                    rep.repaired.append(Message("removed duplicate link of {key}", key=key))
                else:
                    size = size_from_key(key)
                    if size is None:
                        size = os.stat(path / "cur" / fn).st_size
                    fresh = f"{new_key(size)}:2,{split_name(fn)[1]}"
                    os.rename(path / "cur" / fn, path / "cur" / fresh)
                    rep.repaired.append(Message("gave a new key to a second file for {key}", key=key))
        current, _sig = read_uidlist(path)
        if current is None or current.fatal:
            uv = user.next_uidvalidity()
            fresh_ul = UidList(uidvalidity=uv)
            if current is not None:
                present = {split_name(n)[0] for n in os.listdir(path / "cur")}
                for key, _uid in sorted(current.entries.items(), key=lambda kv: kv[1]):
                    if key in present:
                        fresh_ul.assign(key)
            lock.commit(fresh_ul.render())
            rep.repaired.append(Message("uidlist rebuilt with new UIDVALIDITY {uidvalidity}", uidvalidity=uv))
        else:
            # records without a file (expunged ones included: the folder's looks keep a
            # few until a rewrite) are dropped here; two listings, as the locked look
            # does, since readdir may miss a file renamed meanwhile
            present = set()
            for _ in range(2):
                present.update(split_name(n)[0] for n in os.listdir(path / "cur") if not n.startswith("."))
            gone = [k for k in current.entries if k not in present]
            if gone:
                for k in gone:
                    del current.entries[k]
                    current.ext.pop(k, None)
                lock.commit(current.render())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / EXPUNGED_FILE)
    with contextlib.closing(user.folder(name)) as folder:
        folder.sync()
    user.notify(name)  # sessions that have it selected look again (uidvalidity, keys)
    rep.repaired.append(Message("synced (UIDs assigned, missing entries dropped)"))
    return rep


def check_user(user: MaildirUser, repair: bool = False) -> CheckReport:
    """Check (and optionally repair) every folder of ``user``.

    Args:
        user: the user's store.
        repair: fix what is found (see module docstring).

    Returns:
        A ``CheckReport``; ``report.ok`` is False when problems were found (even if
        they were repaired in this run: run again to confirm).
    """
    report = CheckReport(login=user.login)
    if not user.exists():
        report.problems.append(Message("mailbox directory missing"))
        return report
    for info in user.list_folders():
        if info.noselect:
            continue
        try:
            report.folders.append(_check_folder(user, info.name, repair))
        except OSError as exc:  # report, keep checking the other folders
            report.problems.append(Message("folder '{name}': {error}", name=info.name, error=type(exc).__name__))
    usage = user._usage
    report.usage_recorded = usage.get()
    report.usage_actual = usage.walk()
    if report.usage_recorded != report.usage_actual:
        report.problems.append(Message("maildirsize says {recorded}, files say {actual}", recorded=report.usage_recorded, actual=report.usage_actual))
        if repair:
            usage.recalc(force=True)
            report.repaired.append(Message("maildirsize recalculated"))
    return report
