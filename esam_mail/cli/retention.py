"""``esam retention run [--dry-run] [--json]``: purge what the retention periods say expired.

See :mod:`esam_mail.services.ops.retention` and ``[retention]`` in conf/esam.toml.  Every purge is
an audit event ``retention.purge``; mailbox rows (reserved logins) are never purged.
"""

from __future__ import annotations

import argparse

from esam_mail.cli._i18n import _
from esam_mail.cli.commands import (
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
def add_retention(sub: Sub) -> None:
    p = sub.add_parser("retention", help=_("retention periods: purge expired mail, applications, hybrid jobs, audit"))
    rs = p.add_subparsers(dest="retention_cmd", metavar="ACTION", required=True)
    r = rs.add_parser("run", help=_("purge what expired (audited); --dry-run only lists it"))
    r.add_argument("--dry-run", action="store_true", help=_("list what would be purged, change nothing"))
    r.add_argument("--actor", help=actor_help())
    r.add_argument("--json", action="store_true", help=json_help())
    r.set_defaults(func=handle_errors(cmd_retention_run))


def cmd_retention_run(args: argparse.Namespace) -> int:
    from esam_mail.cli._actor import actor_for

    cfg = load_config(args)
    actor = actor_for(args, cfg)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.ops.retention import Retention

        svc = app.build(cfg)
        try:
            done = await Retention(cfg, svc.directory, svc.store, svc.extras.get("official")).run(
                dry_run=args.dry_run, actor=actor)
        finally:
            await svc.close()
        verb = _("would purge") if args.dry_run else _("purged")
        lines = [f"{verb} {p.kind:12} {p.target}" for p in done] or [_("nothing expired")]
        emit(args, {"dry_run": args.dry_run, "purged": [p.to_dict() for p in done]}, "\n".join(lines))
        return 0

    return run_async(go())
