"""``esam official`` (registered senders, sending) and ``esam evidence`` (show, verify).

* ``esam official sender add NAME --display-name TEXT (--cert FILE | --fingerprint HEX |
  --public-key FILE) [--bin BIN] [--notify ADDRESS]``
* ``esam official sender list`` / ``esam official sender remove NAME``
* ``esam official send --sender NAME --to IIN...|BIN... --document FILE --subject TEXT
  [--signature FILE.p7s]``: what the HTTP API does, from the command line
* ``esam evidence show ID [--export FILE]``: the chain of one message, verified
* ``esam evidence verify FILE [--cert operator-cert.pem]``: offline; exit 1 when the
  chain does not verify (a changed, dropped or reordered record)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from esam_mail.cli._actor import actor_for
from esam_mail.cli._i18n import _, _n
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
from esam_mail.errors import ValidationError


@command
def add_official(sub: Sub) -> None:
    p = sub.add_parser("official", help=_("official electronic documents: registered senders, sending"))
    os_ = p.add_subparsers(dest="official_cmd", metavar="ACTION", required=True)
    snd = os_.add_parser("sender", help=_("senders (state bodies) allowed to send official documents"))
    ss = snd.add_subparsers(dest="sender_cmd", metavar="ACTION", required=True)

    a = ss.add_parser("add", help=_("register a sender with its client certificate or request-signing key"))
    a.add_argument("name", help=_("short name, e.g. kgd (lower case)"))
    a.add_argument("--display-name", required=True, help=_("name shown to recipients"))
    a.add_argument("--bin", help=_("the sender's BIN: document signatures must come from its certificates"))
    a.add_argument("--cert", metavar="FILE", help=_("the sender's TLS client certificate (PEM)"))
    a.add_argument("--fingerprint", help=_("SHA-256 fingerprint of the client certificate instead of --cert"))
    a.add_argument("--public-key", metavar="FILE", help=_("PEM public key for signed API requests"))
    a.add_argument("--notify", metavar="ADDRESS", help=_("where evidence is mailed"))
    a.add_argument("--actor", help=actor_help())
    a.add_argument("--json", action="store_true", help=json_help())
    a.set_defaults(func=cmd_sender_add)

    ls = ss.add_parser("list", help=_("registered senders"))
    ls.add_argument("--all", action="store_true", help=_("include removed senders"))
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=cmd_sender_list)

    rm = ss.add_parser("remove", help=_("retire a sender (its evidence stays)"))
    rm.add_argument("name")
    rm.add_argument("--actor", help=actor_help())
    rm.set_defaults(func=cmd_sender_remove)

    sd = os_.add_parser("send", help=_("send one official document to an IIN or BIN"))
    sd.add_argument("--sender", required=True, help=_("registered sender name"))
    sd.add_argument("--to", required=True, metavar="IIN…|BIN…", help=_("recipient, e.g. IIN900101300811"))
    sd.add_argument("--document", required=True, metavar="FILE")
    sd.add_argument("--subject", required=True)
    sd.add_argument("--signature", metavar="FILE",
                    help=_("the sender's CMS signature of the document; without it the operator signs"))
    sd.add_argument("--text", default="", help=_("a covering note"))
    sd.add_argument("--json", action="store_true", help=json_help())
    sd.set_defaults(func=cmd_send)

    ev = sub.add_parser("evidence", help=_("evidence of official deliveries: show, verify offline"))
    es = ev.add_subparsers(dest="evidence_cmd", metavar="ACTION", required=True)
    sh = es.add_parser("show", help=_("the verified evidence chain of one official message"))
    sh.add_argument("id", help=_("the message id (OM...)"))
    sh.add_argument("--export", metavar="FILE", help=_("also write the chain file (for `evidence verify`)"))
    sh.add_argument("--json", action="store_true", help=json_help())
    sh.set_defaults(func=cmd_evidence_show)
    vf = es.add_parser("verify", help=_("verify a chain file offline with the operator's certificate"))
    vf.add_argument("file")
    vf.add_argument("--cert", metavar="PEM", help=_("operator certificate (default: this server's)"))
    vf.add_argument("--json", action="store_true", help=json_help())
    vf.set_defaults(func=cmd_evidence_verify)


async def _with_official(cfg: Any, fn: Any) -> Any:
    from esam_mail import app

    svc = app.build(cfg)
    try:
        return await fn(svc.extras["official"])
    finally:
        await svc.close()


@handle_errors
def cmd_sender_add(args: argparse.Namespace) -> int:
    from esam_mail.services.official.channel import fingerprint_of_pem, sender_dict

    cfg = load_config(args)
    actor = actor_for(args, cfg)
    fp = args.fingerprint
    if args.cert:
        fp = fingerprint_of_pem(_read(args.cert, "cert"))
    key = _read(args.public_key, "public_key").decode("ascii", "replace") if args.public_key else None
    rec = run_async(_with_official(cfg, lambda o: o.add_sender(
        args.name, args.display_name, bin=args.bin, cert_fingerprint=fp, public_key_pem=key,
        notify_address=args.notify, actor=actor)))
    emit(args, sender_dict(rec), _("registered sender {name} ({display_name})", name=rec.name,
                                   display_name=rec.display_name))
    return 0


@handle_errors
def cmd_sender_list(args: argparse.Namespace) -> int:
    from esam_mail.services.official.channel import sender_dict

    cfg = load_config(args)
    rows = run_async(_with_official(cfg, lambda o: o.list_senders(include_removed=args.all)))
    data = [sender_dict(r) for r in rows]
    emit(args, data, "\n".join(
        f"{r['name']:16} {'active' if r['active'] else 'removed':8} {r['bin'] or '-':12} "
        f"{(r['cert_fingerprint'] or '-')[:16]:16} {r['display_name']}" for r in data) or _("no senders"))
    return 0


@handle_errors
def cmd_sender_remove(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    actor = actor_for(args, cfg)
    rec = run_async(_with_official(cfg, lambda o: o.remove_sender(args.name, actor=actor)))
    print(_("removed sender {name}", name=rec.name))
    return 0


@handle_errors
def cmd_send(args: argparse.Namespace) -> int:
    from esam_mail.services.official.channel import OfficialError

    cfg = load_config(args)
    document = _read(args.document, "document")
    signature = _read(args.signature, "signature") if args.signature else None

    async def go(o: Any) -> Any:
        sender = await o.sender(name=args.sender)
        if sender is None:
            raise ValidationError("sender", _("no registered sender {name!r}", name=args.sender))
        return await o.submit(sender, recipient=args.to, document=document, filename=Path(args.document).name,
                              subject=args.subject, signature=signature, text=args.text)

    try:
        sub = run_async(_with_official(cfg, go))
    except OfficialError as exc:
        err(_("refused ({code}): {reason}", code=exc.code, reason=exc.public)
            + (" [" + _("evidence: {id}", id=exc.message_id) + "]" if exc.message_id else ""))
        return 1
    emit(args, sub.to_dict(), f"{sub.message_id}: {sub.state} to {sub.address}")
    return 0


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(field, _("cannot read {path!r} ({reason})", path=path, reason=exc.strerror)) from None


def _summary(records: list[dict[str, Any]]) -> str:
    lines = [_n("{id}: {n} record, chain verified", "{id}: {n} records, chain verified", len(records),
                id=records[0]["message_id"])]
    for r in records:
        extra = f" ({r['reason']})" if r.get("reason") else ""
        lines.append(f"  {r['seq']:2} {r['time']} {r['event']:9} {r['etsi_event']}{extra}")
    return "\n".join(lines)


@handle_errors
def cmd_evidence_show(args: argparse.Namespace) -> int:
    from cryptography import x509

    from esam_mail.services.official.evidence import EvidenceInvalid, verify_chain

    cfg = load_config(args)
    doc = run_async(_with_official(cfg, lambda o: o.chain(args.id)))
    cert = x509.load_pem_x509_certificate(cfg.operator_cert.read_bytes())
    try:
        records = verify_chain(doc, cert)
    except EvidenceInvalid as exc:
        err(_("evidence of {id} does NOT verify: {reason}", id=args.id, reason=exc))
        return 1
    if args.export:
        Path(args.export).write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    emit(args, doc, _summary(records))
    return 0


@handle_errors
def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from cryptography import x509

    from esam_mail.services.official.evidence import EvidenceInvalid, verify_chain

    pem = _read(args.cert or str(load_config(args).operator_cert), "cert")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ValidationError("cert", _("not a PEM certificate")) from None
    try:
        doc = json.loads(_read(args.file, "file"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        err(_("{file}: not JSON: the evidence file is damaged", file=args.file))
        return 1
    try:
        records = verify_chain(doc, cert)
    except EvidenceInvalid as exc:
        err(_("{file}: evidence does NOT verify: {reason}", file=args.file, reason=exc))
        return 1
    emit(args, {"valid": True, "records": len(records), "events": [r["event"] for r in records]},
         _summary(records))
    return 0
