"""``esam hybrid``: print batches, status events and scanned paper letters (R10).

* ``esam hybrid batches [--state open|closed] [--json]``: open and closed print batches.
* ``esam hybrid batch close ID``: close a batch; writes the job folder with the PDFs,
  ``manifest.json`` and ``manifest.csv`` (prints the folder).
* ``esam hybrid status TRACKING EVENT [--actor KIND:ID] [--note TEXT]``: record a status
  event; PRINTED, DELIVERED and RETURNED send the status e-mail into the sender's INBOX.
* ``esam hybrid show TRACKING [--json]``: the item's event history.
* ``esam hybrid ingest --to IIN|BIN|#ID --scan FILE.pdf --facility CODE --employee ID
  [--sender-name NAME] [--tracking S10]``: deliver a scanned paper letter (audited).

State lives under ``<data_dir>/hybrid`` and is shared safely with a running server.
Exit codes: 0 ok, 2 bad input (``esam: field: message``, nothing written or delivered),
3 not found, 78 configuration problems.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esam_mail.cli._i18n import _
from esam_mail.cli.commands import (
    Sub,
    actor_help,
    command,
    emit,
    err,
    handle_errors,
    json_help,
    load_config,
    run_async,
)
from esam_mail.errors import NotFound
from esam_mail.services.hybrid import HybridEvent, HybridInputError, HybridStateError
from esam_mail.services.hybrid.events import RETURN_REASONS, SCAN_EVENTS

if TYPE_CHECKING:
    from esam_mail.services.hybrid.gateway import HybridMail


def hybrid_post(cfg: Any) -> Any:
    """Imported on use: the gateway pulls in SQLAlchemy, too slow for every `esam` call."""
    from esam_mail.services.hybrid.gateway import hybrid_post as make

    return make(cfg)


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Like :func:`handle_errors`, plus state errors (a refused transition) as exit 2."""
    inner = handle_errors(func)

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return inner(args)
        except HybridStateError as e:
            err(f"event: {e}")  # the service's reason
            return 2

    return wrapper


def _with_services(args: argparse.Namespace, body: Callable[[HybridMail], Coroutine[Any, Any, int]]) -> int:
    """Run ``body`` with a :class:`HybridMail` over the configured directory and store."""
    cfg = load_config(args)

    async def go() -> int:
        from esam_mail import app

        svc = app.build(cfg)
        try:
            from esam_mail.services.hybrid.gateway import HybridMail

            return await body(HybridMail.from_config(cfg, svc.directory, svc.store))
        finally:
            svc.notifier.close()
            await svc.close()

    return run_async(go())


@command
def add_hybrid(sub: Sub) -> None:
    p = sub.add_parser("hybrid", help=_("hybrid mail: print batches, status events, scanned letters"))
    h = p.add_subparsers(dest="hybrid_cmd", metavar="ACTION", required=True)

    ls = h.add_parser("batches", help=_("list print batches (open and closed)"))
    ls.add_argument("--state", choices=["open", "closed"])
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=_guard(cmd_batches))

    b = h.add_parser("batch", help=_("act on one batch"))
    ba = b.add_subparsers(dest="batch_cmd", metavar="ACTION", required=True)
    bc = ba.add_parser("close", help=_("close a batch: write the job folder, manifest.json and manifest.csv"))
    bc.add_argument("batch_id", metavar="ID")
    bc.add_argument("--json", action="store_true", help=json_help())
    bc.set_defaults(func=_guard(cmd_batch_close))

    st = h.add_parser("status", help=_("record a status event (PRINTED, DELIVERED, RETURNED mail the sender)"))
    st.add_argument("tracking", metavar="TRACKING")
    st.add_argument("event", metavar="EVENT", type=str.upper,
                    help=", ".join(e.value for e in HybridEvent
                                   if e is not HybridEvent.ACCEPTED and e not in SCAN_EVENTS))
    st.add_argument("--actor", help=actor_help())
    st.add_argument("--note", default="", help=_("free text kept with the event"))
    st.add_argument("--reason", default="", metavar="CODE|TEXT",
                    help=_("why (RETURNED, PRINT_FAILED, REJECTED); goes into the sender's status e-mail. "
                           "Codes: {codes}", codes=", ".join(RETURN_REASONS)))
    st.add_argument("--json", action="store_true", help=json_help())
    st.set_defaults(func=_guard(cmd_status))

    sh = h.add_parser("show", help=_("the event history of one item"))
    sh.add_argument("tracking", metavar="TRACKING")
    sh.add_argument("--json", action="store_true", help=json_help())
    sh.set_defaults(func=_guard(cmd_show))

    ig = h.add_parser("ingest", help=_("deliver a scanned paper letter (PDF) into a mailbox (audited)"))
    ig.add_argument("--to", required=True, metavar="IIN|BIN|#ID",
                    help=_("the addressee: their IIN or BIN as on the envelope, or a mailbox id (#ID, see "
                           "`esam mailbox show`); never a login, which says nothing about who holds it"))
    ig.add_argument("--scan", required=True, type=Path, metavar="FILE.pdf", help=_("the scan, one PDF"))
    ig.add_argument("--facility", required=True, metavar="CODE", help=_("facility that scanned it"))
    ig.add_argument("--employee", required=True, metavar="ID", help=_("employee who scanned it (audit)"))
    ig.add_argument("--sender-name", default="", help=_("the paper letter's sender, as on the envelope"))
    ig.add_argument("--tracking", metavar="S10", help=_("S10 number of the paper item (default: a new one)"))
    ig.add_argument("--json", action="store_true", help=json_help())
    ig.set_defaults(func=_guard(cmd_ingest))


def _batch_dict(b: Any) -> dict[str, Any]:
    return {"batch_id": b.batch_id, "facility": b.facility, "state": b.state, "created": b.created,
            "closed": b.closed, "items": b.items, "path": str(b.path)}


def cmd_batches(args: argparse.Namespace) -> int:
    post = hybrid_post(load_config(args))
    rows = [_batch_dict(b) for b in post.batches.list(state=args.state)]
    emit(args, rows, "\n".join(
        f"{r['batch_id']:36} {r['facility']:8} {r['state']:6} "
        + _("{items:4} items  created {created}", items=r["items"], created=r["created"])
        + ("  " + _("closed {time}", time=r["closed"]) if r["closed"] else "")
        for r in rows
    ) or _("(no batches)"))
    return 0


def cmd_batch_close(args: argparse.Namespace) -> int:
    post = hybrid_post(load_config(args))
    job = post.batches.close(args.batch_id)
    data = {"batch_id": args.batch_id, "path": str(job), "manifest_json": str(job / "manifest.json"),
            "manifest_csv": str(job / "manifest.csv")}
    emit(args, data, _("closed {batch}: {path}", batch=args.batch_id, path=job)
         + f"\n  {data['manifest_json']}\n  {data['manifest_csv']}")
    return 0


def _event(value: str) -> HybridEvent:
    try:
        return HybridEvent(value)
    except ValueError:
        raise HybridInputError(
            "event", _("{value!r} is not an event; one of {events}", value=value,
                       events=", ".join(e.value for e in HybridEvent))
        ) from None


def cmd_status(args: argparse.Namespace) -> int:
    ev = _event(args.event)

    from esam_mail.cli._actor import actor_for

    kind, ident = actor_for(args, load_config(args))

    async def body(hm: HybridMail) -> int:
        rec, delivered = await hm.record_event(args.tracking, ev, actor=f"{kind}:{ident}", note=args.note,
                                               reason=args.reason)
        data = {"seq": rec.seq, "tracking_number": rec.tracking_number, "event": str(rec.event),
                "time": rec.time.isoformat(), "actor": rec.actor, "note": rec.note, "reason": rec.reason,
                "notice_delivered": delivered}
        human = f"{rec.tracking_number}: {rec.event} (#{rec.seq}, {rec.time:%Y-%m-%d %H:%M:%S} UTC)"
        if delivered is True:
            human += "; " + _("status e-mail delivered to the sender")
        elif delivered is False:
            human += "; " + _("the sender's mailbox could not take the status e-mail")
        emit(args, data, human)
        return 0

    return _with_services(args, body)


def cmd_show(args: argparse.Namespace) -> int:
    post = hybrid_post(load_config(args))
    history = post.events.history(args.tracking)
    if not history:
        raise NotFound(_("hybrid item {tracking}", tracking=args.tracking))
    rows = [{"seq": r.seq, "time": r.time.isoformat(), "event": str(r.event), "actor": r.actor,
             "note": r.note, "reason": r.reason} for r in history]
    emit(args, {"tracking_number": history[0].tracking_number, "events": rows}, "\n".join(
        f"{r.seq:3} {r.time:%Y-%m-%d %H:%M:%S} {r.event!s:17} {r.actor:24} {r.note}".rstrip() for r in history
    ))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its parse warnings are not for the operator
    try:
        pdf = args.scan.read_bytes()
    except OSError as exc:
        raise HybridInputError("scan", _("cannot read {path} ({reason})", path=args.scan, reason=exc.strerror)) from None

    from esam_mail.cli.staff import verify_employee

    employee = verify_employee(load_config(args), args.employee, "hybrid.operate", None)

    async def body(hm: HybridMail) -> int:
        res = await hm.ingest(pdf, to=args.to, facility=args.facility, employee=employee,
                              sender_name=args.sender_name, tracking_number=args.tracking)
        data = {"tracking_number": res.tracking_number, "to": res.address, "message_id": res.message_id,
                "pages": res.pages, "size": res.size, "sha256": res.sha256}
        emit(args, data, _("delivered {tracking} to {address} ({pages} pages, sha256 {sha256})",
                           tracking=res.tracking_number, address=res.address, pages=res.pages, sha256=res.sha256))
        return 0

    return _with_services(args, body)
