"""Sysadmin subcommands: ``dns``, ``stats``, ``import``, ``export``, ``backup``, ``restore``.

Long-running commands draw a progress bar on standard error when it is a
terminal, and otherwise stay quiet; all of them end with a one-line summary on
standard output.  See docs/sysadmin.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, TextIO

from esam_mail.cli._i18n import _
from esam_mail.cli.args import number, whole
from esam_mail.cli.commands import (
    Sub,
    command,
    emit,
    err,
    handle_errors,
    json_help,
    load_config,
    run_async,
    say,
)
from esam_mail.errors import NotFound


class ProgressBar:
    """``progress(done, total)`` callback: a bar on a TTY, nothing otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, *, force: bool | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if force is None else force
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * done // total if total else width
        pct = 100 * done // total if total else 100
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {pct:3d}%")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# -- dns ------------------------------------------------------------------------------------
@command
def add_dns(sub: Sub) -> None:
    p = sub.add_parser("dns", help=_("print the DNS records the mail domain needs (zone-file syntax)"))
    p.add_argument("--json", action="store_true", help=_("JSON instead of zone-file lines"))
    p.set_defaults(func=cmd_dns)


def cmd_dns(args: argparse.Namespace) -> int:
    from esam_mail.services.ops import dnsrecords

    cfg = load_config(args)
    data = dnsrecords.records(cfg)
    if args.json:
        print(json.dumps({**data, "records": [r.to_json() for r in data["records"]]}, indent=2))
    else:
        sys.stdout.write(dnsrecords.zone_text(data))
    return 0


# -- stats ----------------------------------------------------------------------------------
@command
def add_stats(sub: Sub) -> None:
    p = sub.add_parser("stats", help=_("mailboxes by kind and state, messages, storage used, queue"))
    p.add_argument("--json", action="store_true", help=json_help())
    p.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    from esam_mail.services.ops import stats

    cfg = load_config(args)

    async def go() -> int:
        from esam_mail.directory.sql import SqlDirectory
        from esam_mail.store.maildir import MaildirStore
        from esam_mail.store.spool import Spool

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            data = await stats.gather(d, MaildirStore(cfg.store_path, fsync=False),
                                      Spool(cfg.data_dir / "queue", fsync=False))
        finally:
            await d.close()
        emit(args, data, stats_text(data))
        return 0

    return run_async(go())


def stats_text(data: dict[str, Any]) -> str:
    """The table of ``esam stats`` (kinds and states are values, as in --json)."""
    mb, st, q = data["mailboxes"], data["storage"], data["queue"]
    labels = [_("mailboxes"), _("messages"), _("storage"), _("queue")]
    width = max(15, *(len(label) + 2 for label in labels))
    lines = [f"{labels[0]:{width}}{mb['total']}"]
    for kind, states in mb["by_kind"].items():
        lines.append(f"  {kind:12} " + ", ".join(f"{s} {n}" for s, n in states.items()))
    lines.append(f"{labels[1]:{width}}{st['messages']}")
    lines.append(f"{labels[2]:{width}}" + _("{bytes} bytes ({mib} MiB)", bytes=st["bytes"],
                                               mib=f"{st['bytes'] / 1048576:.1f}"))
    lines.append(f"{labels[3]:{width}}" + _("{messages} messages, {pending} recipients pending, oldest {age} s",
                                               messages=q["messages"], pending=q["recipients_pending"],
                                               age=f"{q['oldest_age_seconds']:.0f}"))
    return "\n".join(lines)


# -- import / export ------------------------------------------------------------------------
@command
def add_import(sub: Sub) -> None:
    p = sub.add_parser(
        "import", help=_("import users (Dovecot passwd-file, hashes kept) and their Maildir trees"),
        description=_("Create a mailbox for every user of a Dovecot passwd-file, keeping the password "
                      "hash (rehashed to argon2id at the first login), and copy each user's Maildir++ tree "
                      "with its flags. Existing logins are skipped."),
    )
    p.add_argument("--passwd-file", required=True, type=Path, help=_("Dovecot passwd-file (user:{SCHEME}hash:...)"))
    p.add_argument("--maildir", type=Path, help=_("tree holding the users' Maildirs (default: the passwd homes)"))
    p.add_argument("--domain", help=_("source domain of the users (default: mail.domain); others are skipped"))
    p.add_argument("--kind", choices=["personal", "service"], default="personal")
    p.add_argument("--json", action="store_true", help=json_help())
    p.set_defaults(func=handle_errors(cmd_import))


def cmd_import(args: argparse.Namespace) -> int:
    from esam_mail.services.ops import migrate

    cfg = load_config(args)
    try:
        entries = migrate.parse_passwd_file(args.passwd_file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        err(f"passwd-file: {exc}")  # the reason is the parser's
        return 2
    if args.maildir is not None and not args.maildir.is_dir():
        err("maildir: " + _("{path} is not a directory", path=args.maildir))
        return 2
    bar = ProgressBar(_("importing"))

    async def go() -> int:
        from esam_mail.directory.sql import SqlDirectory
        from esam_mail.store.maildir import MaildirStore

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            report = await migrate.import_dovecot(
                d, MaildirStore(cfg.store_path, fsync=cfg.store.fsync), entries,
                maildir_root=args.maildir, domain=args.domain or cfg.mail.domain, kind=args.kind,
                progress=bar,
            )
        finally:
            bar.close()
            await d.close()
        for user, reason in report.skipped:
            err(_("skipped {user}: {reason}", user=user, reason=say(reason)))
        emit(args, {"created": report.created, "skipped": report.skipped, "folders": report.folders,
                    "messages": report.messages, "bytes": report.bytes},
             _("imported {mailboxes} mailboxes, {folders} folders, {messages} messages ({bytes} bytes); "
               "skipped {skipped}", mailboxes=len(report.created), folders=report.folders,
               messages=report.messages, bytes=report.bytes, skipped=len(report.skipped)))
        return 0

    return run_async(go())


@command
def add_export(sub: Sub) -> None:
    p = sub.add_parser("export", help=_("export one mailbox as mbox files or a Maildir++ tree"))
    p.add_argument("mailbox", help=_("login or address"))
    p.add_argument("--format", choices=["mbox", "maildir"], required=True)
    p.add_argument("--output", required=True, type=Path, help=_("a new (or empty) directory"))
    p.set_defaults(func=handle_errors(cmd_export))


def cmd_export(args: argparse.Namespace) -> int:
    from esam_mail.services.ops import migrate

    cfg = load_config(args)

    async def find() -> Any:
        from esam_mail.directory.sql import SqlDirectory

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            return await d.get(args.mailbox)
        finally:
            await d.close()

    rec = run_async(find())
    if rec is None:
        raise NotFound(args.mailbox)
    from esam_mail.store.maildir import MaildirStore

    user = MaildirStore(cfg.store_path).user(rec.login_norm)
    if not user.exists():
        raise NotFound(_("{mailbox} has no mail store", mailbox=args.mailbox))
    bar = ProgressBar(_("exporting"))
    try:
        report = migrate.export_user(user, args.output, args.format, progress=bar)
    except FileExistsError:
        err("output: " + _("{path} exists and is not an empty directory", path=args.output))
        return 2
    finally:
        bar.close()
    print(_("exported {folders} folders, {messages} messages ({bytes} bytes) to {path}", folders=report.folders,
            messages=report.messages, bytes=report.bytes, path=args.output))
    return 0


# -- backup / restore -----------------------------------------------------------------------
@command
def add_backup(sub: Sub) -> None:
    p = sub.add_parser("backup", help=_("write directory (JSON), mail store, queue, keys and state to a tar.gz"))
    p.add_argument("--output", required=True, type=Path, help=_("FILE.tar.gz"))
    p.set_defaults(func=cmd_backup)


def cmd_backup(args: argparse.Namespace) -> int:
    from esam_mail.services.ops import backup

    cfg = load_config(args)
    bar = ProgressBar(_("backing up"))
    try:
        report = backup.backup(cfg, args.output, progress=bar)
    finally:
        bar.close()
    print(_("backup {path}: {rows} directory rows in {tables} tables, {files} files ({bytes} bytes)",
            path=args.output, rows=sum(report.tables.values()), tables=len(report.tables), files=report.files,
            bytes=report.bytes))
    return 0


@command
def add_restore(sub: Sub) -> None:
    p = sub.add_parser("restore", help=_("restore a backup into an empty data directory and database"))
    p.add_argument("archive", type=Path, help=_("a file written by `esam backup`"))
    p.add_argument("--force", action="store_true", help=_("overwrite a data directory/database that holds data"))
    p.set_defaults(func=cmd_restore)


def cmd_restore(args: argparse.Namespace) -> int:
    from esam_mail.services.ops import backup

    cfg = load_config(args)
    bar = ProgressBar(_("restoring"))
    try:
        report = backup.restore(cfg, args.archive, force=args.force, progress=bar)
    except backup.RestoreRefused as exc:
        err(_("refusing to overwrite ({what}); use --force to replace it", what=exc))
        return 1
    except (ValueError, OSError, tarfile.TarError) as exc:
        err(f"restore: {exc}")  # the archive's own error
        return 1
    finally:
        bar.close()
    print(_("restored {path}: {rows} directory rows in {tables} tables, {files} files", path=args.archive,
            rows=sum(report.tables.values()), tables=len(report.tables), files=report.files))
    return 0


# -- passwd-bench -----------------------------------------------------------------------------
@command
def add_passwd_bench(sub: Sub) -> None:
    p = sub.add_parser(
        "passwd-bench",
        help=_("choose argon2id parameters for this machine (a target time per login check)"),
        description=_("Measure the login check (argon2id through libsodium, as `esam serve` does) on this "
                      "machine and print the strongest [auth] parameters whose check fits the target; never "
                      "below OWASP's minimums. Existing hashes are upgraded at each user's next login once "
                      "the config changes."),
    )
    p.add_argument("--target-ms", type=number(0, above=True), default=100.0, help=_("time one check may take (default 100)"))
    p.add_argument("--max-memory-mib", type=whole(19, 1 << 20), default=256, help=_("memory one check may use (default 256)"))
    p.add_argument("--rounds", type=whole(1, 100), default=3, help=_("measurements per candidate (median; default 3)"))
    p.add_argument("--json", action="store_true", help=json_help())
    p.set_defaults(func=handle_errors(cmd_passwd_bench))


def cmd_passwd_bench(args: argparse.Namespace) -> int:
    from esam_mail.directory.passwords import choose_argon2
    # --target-ms > 0, --max-memory-mib >= 19 (OWASP's argon2id minimum), 1 <= --rounds <= 100:
    # checked by the parser (esam_mail.cli.args)
    choice = choose_argon2(args.target_ms, max_memory_kib=args.max_memory_mib * 1024, rounds=args.rounds)
    if args.json:
        emit(args, {"memory_kib": choice.memory_kib, "time_cost": choice.time_cost,
                    "parallelism": choice.parallelism, "median_ms": round(choice.median_ms, 1),
                    "within_target": choice.within_target,
                    "tried": [{"memory_kib": m, "time_cost": t, "median_ms": round(ms, 1)}
                              for m, t, ms in choice.tried]}, "")
        return 0
    for m, t, ms in choice.tried:
        print(f"  m={m // 1024:>4} MiB  t={t:<2} p=1   {ms:8.1f} ms")
    if not choice.within_target:
        err(_("even OWASP's minimum takes {ms} ms here, over the {target} ms target; using the minimum anyway",
              ms=f"{choice.median_ms:.0f}", target=f"{args.target_ms:g}"))
    print("[auth]")
    print(f"argon2_memory_kib = {choice.memory_kib}")
    print(f"argon2_time_cost = {choice.time_cost}")
    print(f"argon2_parallelism = {choice.parallelism}")
    print("# " + _("one check: {ms} ms median here; hash_workers threads check in parallel",
                   ms=f"{choice.median_ms:.0f}"))
    return 0
