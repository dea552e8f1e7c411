"""``esam staff``: staff accounts with roles, password + TOTP, office binding.

* ``esam staff add USERNAME --name TEXT --role ROLE [--office CODE] [--os-user NAME]
  --password-stdin``: prints the TOTP secret and its ``otpauth://`` URI once (for the
  authenticator app); administrators only
* ``esam staff list`` / ``esam staff disable|enable USERNAME`` /
  ``esam staff role USERNAME ROLE [--office CODE]``
"""

from __future__ import annotations

import argparse
from typing import Any

from esam_mail.cli._actor import actor_for, is_administrator, staff_service
from esam_mail.cli._i18n import N_, _
from esam_mail.cli.commands import Sub, command, emit, err, handle_errors, json_help, load_config, run_async
from esam_mail.errors import ValidationError
from esam_mail.services.accounts.staff import ROLES


@command
def add_staff(sub: Sub) -> None:
    p = sub.add_parser("staff", help=_("staff accounts: roles, offices, password + TOTP (administrators)"))
    ss = p.add_subparsers(dest="staff_cmd", metavar="ACTION", required=True)
    a = ss.add_parser("add", help=_("create a staff account; prints its TOTP secret once"))
    a.add_argument("username")
    a.add_argument("--name", required=True, help=_("full name"))
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--office", help=_("post office code (required for the employee role)"))
    a.add_argument("--os-user", help=_("OS user whose CLI actions are recorded as this account"))
    a.add_argument("--password-stdin", action="store_true", required=True, help=_("read the password from stdin"))
    a.add_argument("--json", action="store_true", help=json_help())
    a.set_defaults(func=cmd_staff_add)
    ls = ss.add_parser("list", help=_("staff accounts"))
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=cmd_staff_list)
    for name, helptext in (("disable", N_("disable an account")), ("enable", N_("enable an account again"))):
        q = ss.add_parser(name, help=_(helptext))
        q.add_argument("username")
        q.set_defaults(func=cmd_staff_state, active=name == "enable")
    r = ss.add_parser("role", help=_("change an account's role (and office)"))
    r.add_argument("username")
    r.add_argument("role", choices=ROLES)
    r.add_argument("--office", help=_("new office code ('' removes the binding)"))
    r.set_defaults(func=cmd_staff_role)


def _admin_only(args: argparse.Namespace, cfg: Any) -> tuple[str, str]:
    actor = actor_for(args, cfg)
    if not is_administrator(cfg):
        raise ValidationError("actor", _("only an administrator manages staff accounts ({actor})",
                                         actor=f"{actor[0]}:{actor[1]}"))
    return actor


async def _with_staff(cfg: Any, fn: Any) -> Any:
    svc = staff_service(cfg)
    try:
        return await fn(svc)
    finally:
        await svc.directory.close()


@handle_errors
def cmd_staff_add(args: argparse.Namespace) -> int:
    import sys

    import pyotp

    cfg = load_config(args)
    actor = _admin_only(args, cfg)
    password = sys.stdin.readline().rstrip("\r\n")
    rec, secret = run_async(_with_staff(cfg, lambda s: s.add(
        args.username, args.name, args.role, password, office_code=args.office, os_user=args.os_user, actor=actor)))
    uri = pyotp.TOTP(secret).provisioning_uri(name=rec.username, issuer_name=cfg.mail.domain)
    emit(args, {**rec.to_dict(), "totp_secret": secret, "totp_uri": uri},
         _("staff account {username} ({role}, office {office})", username=rec.username, role=rec.role,
           office=rec.office_code or "-") + "\n"
         + _("TOTP secret (shown once): {secret}", secret=secret) + f"\n{uri}")
    return 0


@handle_errors
def cmd_staff_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    rows = run_async(_with_staff(cfg, lambda s: s.list()))
    data = [r.to_dict() for r in rows]
    emit(args, data, "\n".join(
        f"{r['username']:20} {r['role']:10} {r['office'] or '-':8} {'active' if r['active'] else 'disabled':8} "
        f"{r['display_name']}" for r in data) or _("no staff accounts"))
    return 0


@handle_errors
def cmd_staff_state(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    actor = _admin_only(args, cfg)
    rec = run_async(_with_staff(cfg, lambda s: s.set_state(args.username, args.active, actor=actor)))
    print(f"{rec.username}: {'active' if rec.active else 'disabled'}")
    return 0


@handle_errors
def cmd_staff_role(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    actor = _admin_only(args, cfg)
    rec = run_async(_with_staff(cfg, lambda s: s.set_role(args.username, args.role, office_code=args.office,
                                                          actor=actor)))
    print(_("{username}: {role} at {office}", username=rec.username, role=rec.role, office=rec.office_code or "-"))
    return 0


def verify_employee(cfg: Any, employee: str, action: str, office: str | None) -> str:
    """``--employee ID`` must be an active staff account whose role allows ``action`` (and,
    for the employee role, whose office is ``office``).  Returns the id to record.

    Raises:
        ValidationError: on ``employee``.
    """
    rec = run_async(_with_staff(cfg, lambda s: s.check_employee(employee, action, office_code=office)))
    return str(rec.username)


__all__ = ["err", "verify_employee"]
