"""``esam store check [--repair] [LOGIN ...] [--json]``: verify and rebuild the Maildir indexes.

Checks every user of the store (or the logins given) with ``check_user``: uidlists
(parsable, no duplicate or too-high UIDs, every file listed once), duplicated keys in
``cur/`` and ``maildirsize``.  ``--repair`` fixes what it finds under the folder lock and
then checks again; the exit code is that of the last check: 0 clean (or repaired), 1
problems remain, 2 a login that cannot be a store name.
"""

from __future__ import annotations

import argparse
from typing import Any

from esam_mail.cli._i18n import _, _n
from esam_mail.cli.commands import Sub, command, emit, err, load_config, say
from esam_mail.errors import StoreError


@command
def add_store(sub: Sub) -> None:
    p = sub.add_parser("store", help=_("mail store maintenance: check and repair the Maildir UID indexes"))
    st = p.add_subparsers(dest="store_cmd", metavar="ACTION", required=True)
    c = st.add_parser(
        "check",
        help=_("verify every folder's dovecot-uidlist and maildirsize (exit 1 when problems remain)"),
        description=_("Verify (and with --repair rebuild) the per-folder UID indexes and quota files. "
                      "Exit 0: clean or repaired; 1: problems remain; 2: bad login."),
    )
    c.add_argument("logins", nargs="*", metavar="LOGIN", help=_("store logins to check (default: every user)"))
    c.add_argument(
        "--repair",
        action="store_true",
        help=_("fix what is found (a uidlist that could reuse UIDs gets a new UIDVALIDITY)"),
    )
    c.add_argument("--json", action="store_true", help=_("machine-readable report"))
    c.set_defaults(func=cmd_store_check)


def _as_dict(report: Any) -> dict[str, Any]:
    return {
        "login": report.login,
        "ok": report.ok,
        "problems": list(report.problems),
        "repaired": list(report.repaired),
        "usage_recorded": list(report.usage_recorded),
        "usage_actual": list(report.usage_actual),
        "folders": [
            {
                "name": f.name,
                "messages": f.messages,
                "pending_new": f.pending_new,
                "problems": list(f.problems),
                "repaired": list(f.repaired),
            }
            for f in report.folders
        ],
    }


def cmd_store_check(args: argparse.Namespace) -> int:
    """Run ``check_user`` over the chosen users; with --repair, repair then re-check."""
    from esam_mail.store.check import check_user
    from esam_mail.store.maildir import MaildirStore

    cfg = load_config(args)
    store = MaildirStore(cfg.store_path, fsync=cfg.store.fsync)
    logins: list[str] = list(args.logins) or store.users()
    for login in logins:
        try:
            store.check_login(login)
        except StoreError:
            err("login: " + _("{login!r} is not a valid store login", login=login))
            return 2
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    remaining = 0
    for login in logins:
        user = store.user(login)
        report = check_user(user, repair=args.repair)
        entry = _as_dict(report)
        lines += report.lines(say)
        if args.repair and not report.ok:
            after = check_user(user)
            entry["after_repair"] = _as_dict(after)
            entry["ok_after_repair"] = after.ok
            lines.append(_("user {login}: ok after repair", login=login) if after.ok
                         else _("user {login}: PROBLEMS REMAIN after repair", login=login))
            if not after.ok:
                lines += after.lines(say)[1:]
                remaining += 1
        elif not report.ok:
            remaining += 1
        results.append(entry)
    summary = _n("{n} user checked, {remaining} with problems", "{n} users checked, {remaining} with problems",
                 len(logins), remaining=remaining)
    if args.repair:
        summary += " " + _("after repair")
    emit(
        args,
        {"users": results, "checked": len(logins), "with_problems": remaining, "repair": args.repair},
        "\n".join([*lines, summary]),
    )
    return 1 if remaining else 0
