"""``esam queue list|show|retry|delete``: the outbound spool for the sysadmin.

Works on ``<data_dir>/queue`` directly, next to a running server: every change
is made under the entry's claim (``Spool.claim``), so an entry that a runner is
delivering right now is reported as busy instead of being changed under it.
``retry`` then wakes the queue runner of every server process of the node
(the ``QUEUE_KICK`` notifier event), so the attempt starts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from esam_mail.cli._i18n import _, _n
from esam_mail.cli.commands import Sub, command, emit, err, json_help, load_config, run_async
from esam_mail.config import Config

EX_NOT_FOUND = 3
EX_BUSY = 75  # EX_TEMPFAIL: being delivered right now, try again


def _spool(cfg: Config) -> Any:
    from esam_mail.store.spool import Spool

    return Spool(cfg.data_dir / "queue", fsync=cfg.store.fsync)


def _age(seconds: float) -> str:
    """``45s``, ``12m``, ``5h12m``, ``2d03h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def entry_dict(e: Any) -> dict[str, Any]:
    """JSON-ready view of a ``SpoolEntry``."""
    return {
        "id": e.id,
        "mail_from": e.mail_from,
        "size": e.size,
        "created": e.created,
        "next_attempt": e.next_attempt,
        "attempts": e.attempts,
        "last_attempt": e.last_attempt,
        "delay_notified": e.delay_notified,
        "recipients": [
            {"address": r.address, "status": r.status, "reply": r.reply, "remote_mta": r.remote_mta,
             "attempts": r.attempts, "notified": r.notified}
            for r in e.rcpts
        ],
    }


def kick_runners(cfg: Config) -> None:
    """Wake the queue runners of every server process of this node (best effort)."""
    from esam_mail.app import notify_dir
    from esam_mail.services.mailflow.queue import QUEUE_KICK
    from esam_mail.store.notify import UnixDatagramNotifier

    notifier = UnixDatagramNotifier(notify_dir(cfg))
    try:
        notifier.publish(*QUEUE_KICK)
    finally:
        notifier.close()


@command
def add_queue(sub: Sub) -> None:
    p = sub.add_parser("queue", help=_("list, show, retry or delete messages in the outbound queue"))
    q = p.add_subparsers(dest="queue_cmd", metavar="ACTION", required=True)
    ls = q.add_parser("list", help=_("every queued message: id, age, size, sender, pending recipients, last reply"))
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=cmd_list)
    sh = q.add_parser("show", help=_("one message: envelope, per-recipient state, headers"))
    sh.add_argument("id")
    sh.add_argument("--body", action="store_true", help=_("print the whole message, not only its header"))
    sh.add_argument("--json", action="store_true", help=json_help())
    sh.set_defaults(func=cmd_show)
    rt = q.add_parser("retry", help=_("deliver now instead of waiting for the next scheduled attempt"))
    rt.add_argument("ids", nargs="*", metavar="ID")
    rt.add_argument("--all", action="store_true", help=_("every queued message"))
    rt.set_defaults(func=cmd_retry)
    de = q.add_parser("delete", help=_("remove messages from the queue without a bounce"))
    de.add_argument("ids", nargs="+", metavar="ID")
    de.set_defaults(func=cmd_delete)


def cmd_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    entries = _spool(cfg).list()
    now = time.time()
    data = [entry_dict(e) for e in entries]
    rows = []
    for e in entries:
        pending = e.pending()
        last = next((r.reply for r in pending if r.reply), None) or ""
        rows.append(
            f"{e.id}  {_age(now - e.created):>6}  {e.size:>9}  <{e.mail_from}>  "
            + _("{pending}/{total} pending  tries {attempts}  next {next}", pending=len(pending),
                total=len(e.rcpts), attempts=e.attempts, next=_when(e.next_attempt))
            + f"  {last}".rstrip()
        )
    emit(args, data, "\n".join(rows) + "\n" + _n("{n} message", "{n} messages", len(entries))
         if rows else _("queue is empty"))
    return 0


def _get(spool: Any, queue_id: str) -> Any:
    try:
        return spool.get(queue_id)
    except KeyError:
        err(_("not found: no queued message {id}", id=queue_id))
        return None


def cmd_show(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    spool = _spool(cfg)
    e = _get(spool, args.id)
    if e is None:
        return EX_NOT_FOUND
    try:
        raw = spool.read_message(e.id)
    except KeyError:
        raw = b""
    text = raw.decode("utf-8", "replace")
    shown = text if args.body else text.split("\r\n\r\n", 1)[0] + "\r\n"
    d = entry_dict(e)
    d["message"] = shown
    labels = [_("id:"), _("from:"), _("size:"), _("queued:"), _("attempts:"), _("next attempt:")]
    width = max(len(x) for x in labels) + 2
    values = [e.id, f"<{e.mail_from}>", str(e.size), _when(e.created),
              _("{attempts} (last {time})", attempts=e.attempts, time=_when(e.last_attempt)),
              _when(e.next_attempt)]
    lines = [f"{label:{width}}{value}" for label, value in zip(labels, values, strict=True)]
    for r in e.rcpts:
        lines.append(f"  <{r.address}>  {r.status}  {r.reply or ''}".rstrip())
    lines += ["", shown.replace("\r\n", "\n").rstrip("\n")]
    emit(args, d, "\n".join(lines))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    spool = _spool(cfg)
    if not args.ids and not args.all:
        err(_("give queue ids or --all"))
        return 2
    ids = spool.ids() if args.all else args.ids
    rc = 0
    now = time.time()
    changed = 0
    for queue_id in ids:
        try:
            claim = spool.claim(queue_id)
        except KeyError:
            claim = None
            rc = EX_NOT_FOUND
            err(_("not found: no queued message {id}", id=queue_id))
            continue
        if claim is None:
            if queue_id in spool.ids():
                print(_("{id}: being delivered right now", id=queue_id))
                rc = rc or EX_BUSY
            else:
                err(_("not found: no queued message {id}", id=queue_id))
                rc = EX_NOT_FOUND
            continue
        with claim:
            claim.entry.next_attempt = now
            try:
                spool.update(claim.entry)
            except KeyError:
                continue
        changed += 1
        print(_("{id}: scheduled now", id=queue_id))
    if changed:
        with contextlib.suppress(OSError, ValueError):
            kick_runners(cfg)
    return rc


def cmd_delete(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    spool = _spool(cfg)
    rc = 0
    deleted = []
    for queue_id in args.ids:
        try:
            claim = spool.claim(queue_id)
        except KeyError:
            claim = None
        if claim is None:
            if queue_id in spool.ids():
                print(_("{id}: being delivered right now, try again", id=queue_id))
                rc = rc or EX_BUSY
            else:
                err(_("not found: no queued message {id}", id=queue_id))
                rc = EX_NOT_FOUND
            continue
        with claim:
            rcpts = [r.address for r in claim.entry.pending()]
            spool.delete(queue_id)
        deleted.append((queue_id, claim.entry.mail_from, rcpts))
        print(_("{id}: deleted", id=queue_id))
    if deleted:
        run_async(_audit(cfg, deleted))
    return rc


async def _audit(cfg: Config, deleted: list[tuple[str, str, list[str]]]) -> int:
    from esam_mail.cli._actor import os_user
    from esam_mail.directory.sql import SqlDirectory

    d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
    try:
        for queue_id, mail_from, rcpts in deleted:
            await d.audit("os", os_user(), "queue.delete", queue_id, mail_from=mail_from, rcpts=rcpts)
    finally:
        await d.close()
    return 0
