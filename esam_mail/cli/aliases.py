"""``esam alias add|list|remove``: local addresses that deliver to mailboxes or elsewhere.

``esam init`` creates the role aliases of ``aliases.roles`` (postmaster, abuse,
hostmaster) pointing at ``aliases.operator_mailbox`` (see :func:`ensure_role_aliases`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from typing import Any

from esam_mail import config as config_mod
from esam_mail.cli._i18n import _
from esam_mail.cli.commands import (
    INIT_STEPS,
    Sub,
    actor_help,
    command,
    emit,
    handle_errors,
    json_help,
    load_config,
    run_async,
)


@command
def add_alias(sub: Sub) -> None:
    p = sub.add_parser("alias", help=_("add, list or remove aliases (postmaster@, abuse@, ...)"))
    a = p.add_subparsers(dest="alias_cmd", metavar="ACTION", required=True)
    add = a.add_parser("add", help=_("create an alias or add targets to it"))
    add.add_argument("name", help=_("local part (or name@domain)"))
    add.add_argument("targets", nargs="+", metavar="TARGET", help=_("a mailbox login, or a remote address"))
    add.add_argument("--actor", help=actor_help())
    add.add_argument("--json", action="store_true", help=json_help())
    add.set_defaults(func=handle_errors(cmd_alias_add))
    ls = a.add_parser("list", help=_("list the aliases and their targets"))
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=handle_errors(cmd_alias_list))
    rm = a.add_parser("remove", help=_("remove targets, or the whole alias (its name is never issued as a login)"))
    rm.add_argument("name")
    rm.add_argument("targets", nargs="*", metavar="TARGET", help=_("only these targets (default: the whole alias)"))
    rm.add_argument("--actor", help=actor_help())
    rm.add_argument("--json", action="store_true", help=json_help())
    rm.set_defaults(func=handle_errors(cmd_alias_remove))


def _actor(args: argparse.Namespace) -> tuple[str, str]:
    from esam_mail.cli._actor import actor_for

    return actor_for(args, load_config(args))


def _dict(rec: Any) -> dict[str, Any]:
    return {"name": rec.name, "address": rec.address, "targets": list(rec.targets)}


def _with_aliases(cfg: config_mod.Config, work: Any) -> Any:
    async def go() -> Any:
        from esam_mail.directory.aliases import AliasDirectory
        from esam_mail.directory.sql import SqlDirectory

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            return await work(AliasDirectory(d))
        finally:
            await d.close()

    return run_async(go())


def cmd_alias_add(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    actor = _actor(args)
    rec = _with_aliases(cfg, lambda a: a.add(args.name, args.targets, actor=actor))
    emit(args, _dict(rec), f"{rec.address} -> {', '.join(rec.targets)}")
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    rows = _with_aliases(cfg, lambda a: a.list_all())
    emit(args, [_dict(r) for r in rows],
         "\n".join(f"{r.address:40} -> {', '.join(r.targets)}" for r in rows) or _("(no aliases)"))
    return 0


def cmd_alias_remove(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    actor = _actor(args)
    rec = _with_aliases(cfg, lambda a: a.remove(args.name, args.targets or None, actor=actor))
    if rec is None:
        emit(args, {"name": args.name, "removed": True}, _("removed {name}", name=args.name))
    else:
        emit(args, _dict(rec), f"{rec.address} -> {', '.join(rec.targets)}")
    return 0


async def ensure_role_aliases(cfg: config_mod.Config) -> list[str]:
    """``esam init``: the operator mailbox and the role aliases pointing at it (idempotent).

    Returns what it did, one line each.  An existing alias is left as it is (the
    sysadmin may have pointed it elsewhere); a role name that is a login is reported
    and skipped (it already receives its mail).
    """
    from esam_mail import app
    from esam_mail.directory.aliases import AliasDirectory
    from esam_mail.errors import ValidationError

    done: list[str] = []
    svc = app.build(cfg)
    try:
        operator = cfg.aliases.operator_mailbox.strip().lower()
        if cfg.aliases.roles and await svc.directory.get(operator) is None:
            # a service mailbox without a usable password until `esam passwd`
            hashed = await asyncio.get_running_loop().run_in_executor(
                None, svc.hasher.hash, secrets.token_urlsafe(32))
            rec = await svc.directory.create_mailbox(operator, hashed, kind="service", actor=("system", "init"))
            svc.store.user(rec.login_norm).create()
            done.append(_("created the operator mailbox {address} (set its password: {command})",
                          address=rec.address, command=f"esam passwd {operator}"))
        aliases = AliasDirectory(svc.directory)
        for role in cfg.aliases.roles:
            if await aliases.resolve(role) is not None:
                continue
            if await svc.directory.get(role) is not None:
                done.append(_("{address} is a mailbox: left as it is", address=f"{role}@{cfg.mail.domain}"))
                continue
            try:
                rec = await aliases.add(role, [operator], actor=("system", "init"))
            except ValidationError as e:
                done.append(f"aliases.roles: {role}: {e.message}")
                continue
            done.append(_("alias {address} -> {targets}", address=rec.address, targets=", ".join(rec.targets)))
    finally:
        await svc.close()
    return done


INIT_STEPS.append(ensure_role_aliases)
