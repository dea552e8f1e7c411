"""Subcommands of ``esam``.  Each ``add_*`` registers one with its --help text."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import secrets
import string
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from esam_mail import config as config_mod
from esam_mail.cli._i18n import DOMAIN, N_, _, cli_language
from esam_mail.cli.args import whole
from esam_mail.errors import ConfigError, LoginTaken, NotFound, ValidationError

Sub = Any  # argparse._SubParsersAction
T = TypeVar("T")
REGISTRY: list[Callable[[Sub], None]] = []
#: More ``esam init`` steps, appended by the cli modules that own them (so this module
#: imports none of them: the cli package stays free of import cycles).
INIT_STEPS: list[Callable[[config_mod.Config], Coroutine[Any, Any, list[str]]]] = []


def command(func: Callable[[Sub], None]) -> Callable[[Sub], None]:
    REGISTRY.append(func)
    return func


def err(msg: str) -> None:
    print(f"esam: {msg}", file=sys.stderr)


def load_config(args: argparse.Namespace) -> config_mod.Config:
    try:
        return config_mod.load(args.config)
    except ConfigError as exc:
        config_problems(exc)
        raise SystemExit(config_mod.EX_CONFIG) from None


def config_problems(exc: ConfigError) -> None:
    """``esam: configuration problems:`` and one line per problem, each naming its key."""
    err(_("configuration problems:"))
    for p in exc.problems:
        print(f"  {problem_text(p)}", file=sys.stderr)


def say(text: str) -> str:
    """*text* in the operator's language when it is an :class:`esam_mail.i18n.Message` (a report
    made below the CLI), else as it is."""
    from esam_mail.i18n import Message

    return text.in_language(DOMAIN, cli_language()) if isinstance(text, Message) else text


def problem_text(problem: str) -> str:
    """A configuration problem in the operator's language (``key: message``)."""
    from esam_mail.errors import Problem

    if isinstance(problem, Problem):
        return f"{problem.key}: {_(problem.msgid, **problem.params)}"
    return problem


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run for the CLI: whatever way the command ends (a refusal, an error, ^C),
    every database engine it connected is disposed before the loop closes, so no aiosqlite
    worker thread outlives it (one that did raised "Event loop is closed" later)."""
    from esam_mail.directory.sql import dispose_loop_engines

    async def guarded() -> T:
        try:
            return await coro
        finally:
            await dispose_loop_engines()

    return asyncio.run(guarded())


def password_from_stdin() -> str:
    """``--password-stdin``: one line from a pipe, or, at a terminal, a prompt that does not
    echo (getpass) and a second one to confirm."""
    if sys.stdin.isatty():
        pw = getpass.getpass(_("Password (not shown): "))
        if pw and pw != getpass.getpass(_("Repeat: ")):
            raise ValidationError("password", _("the two passwords differ"))
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if not pw:
        raise ValidationError("password", _("empty password on standard input"))
    return pw


def read_password(args: argparse.Namespace, *, generate: bool = True) -> tuple[str, bool]:
    """Password from stdin (--password-stdin), a prompt, or generated. Returns (pw, generated)."""
    if getattr(args, "password_stdin", False):
        return password_from_stdin(), False
    if sys.stdin.isatty() and not getattr(args, "generate_password", False):
        pw = getpass.getpass(_("Password: "))
        if pw != getpass.getpass(_("Repeat: ")):
            raise ValidationError("password", _("the two passwords differ"))
        return pw, False
    if not generate:
        raise ValidationError("password", _("give --password-stdin"))
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _i in range(16)), True


def check_password(pw: str, *, login: str | None = None, owner: Any = None) -> None:
    """The one password policy (esam_mail.services.accounts.password_policy), in the operator's language."""
    from esam_mail.services.accounts.password_policy import check_password as policy

    policy(pw, login=login, names=getattr(owner, "names", ()) or (),
           ids=(getattr(owner, "iin", None), getattr(owner, "bin", None)), lang=cli_language())


def actor_help() -> str:
    """--help of ``--actor`` (the same on every command that records an audit event)."""
    return _("who does it, KIND:ID (administrators only; default: you, as os:<user> or your staff account)")


def json_help() -> str:
    """--help of ``--json``: its output is the same in every language."""
    return _("machine-readable output (JSON)")


def emit(args: argparse.Namespace, data: Any, human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        print(human)


def handle_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ValidationError as e:
            problems = getattr(e, "errors", None) or getattr(e, "problems", None) or [(e.field, e.message)]
            for item in problems:
                field, message = (item.field, item.message) if hasattr(item, "field") else item
                err(f"{field}: {say(message)}")
            return 2
        except LoginTaken as e:
            err("username: " + _("login taken: {login}", login=e.login))
            return 2
        except NotFound as e:
            err(_("not found: {what}", what=e))
            return 3

    return wrapper


# -- config -------------------------------------------------------------------------------
@command
def add_check_config(sub: Sub) -> None:
    p = sub.add_parser("check-config", help=_("validate the config file, print every problem (exit 78)"))
    p.set_defaults(func=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    print(_("{source}: OK", source=cfg.source) if cfg.source else _("built-in defaults: OK"))
    return 0


@command
def add_config_example(sub: Sub) -> None:
    p = sub.add_parser("config-example", help=_("print the documented example config (every key, its default)"))
    p.add_argument("--dev", action="store_true", help=_("with the development values of conf/esam.toml"))
    p.set_defaults(func=lambda a: print(config_mod.example(config_mod.DEV_OVERRIDES if a.dev else None)) or 0)


# -- init / serve -------------------------------------------------------------------------
@command
def add_init(sub: Sub) -> None:
    p = sub.add_parser("init", help=_("create data folders, database schema, dev TLS cert and DKIM keys (idempotent)"))
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from esam_mail import app

    cfg = load_config(args)
    for line in app.init(cfg):
        print(say(line))
    run_async(_ensure_agreement(cfg))
    for step in INIT_STEPS:  # registered by the other cli modules (aliases, ...)
        for line in run_async(step(cfg)):
            print(line)
    print(_("ready: data in {path}", path=cfg.data_dir))
    return 0


async def _ensure_agreement(cfg: config_mod.Config) -> None:
    try:
        from esam_mail.services.accounts.registration import ensure_agreement
    except ImportError:  # registration lands separately
        return
    from esam_mail.directory.sql import SqlDirectory

    d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
    try:
        await ensure_agreement(d, cfg)
    except ConfigError as exc:  # e.g. the agreement text changed under the same version label
        config_problems(exc)
        raise SystemExit(config_mod.EX_CONFIG) from None
    finally:
        await d.close()


@command
def add_serve(sub: Sub) -> None:
    p = sub.add_parser("serve", help=_("run every listener until SIGTERM/SIGINT"))
    p.add_argument("--ready-file", help=_("write the bound ports as JSON here once listening"))
    p.add_argument("--workers", type=whole(1, 64),
                   help=_("worker processes sharing the sockets (overrides server.workers)"))
    p.add_argument("--roles", metavar="GROUPS",
                   help=_("run roles in separate processes: smtp, imap, http, comma-separated "
                          "('+' keeps roles together, e.g. smtp+http,imap); overrides server.roles"))
    p.add_argument("--no-init", action="store_true", help=_("do not run `init` first"))
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from esam_mail import app, log

    cfg = load_config(args)
    log.setup(cfg.server.log_level, cfg.server.log_file)
    if not args.no_init:
        for line in app.init(cfg):
            print(say(line), file=sys.stderr)
        run_async(_ensure_agreement(cfg))
    workers = args.workers or cfg.server.workers
    try:
        groups = config_mod.parse_roles(args.roles if args.roles is not None else cfg.server.roles)
    except ValueError as exc:
        err("--roles: " + problem_text(exc.args[0]))
        return 2
    if workers > 1 or len(groups) > 1 or groups[0] != frozenset(config_mod.ROLES):
        from esam_mail.cli.workers import run_workers

        return run_workers(cfg, workers, args.ready_file, groups)
    print(serve_hint(cfg), file=sys.stderr)
    return app.run(cfg, ready_file=args.ready_file)


def serve_hint(cfg: config_mod.Config) -> str:
    c = f" -c {cfg.source}" if cfg.source else ""
    prog = sys.argv[0] if os.path.basename(sys.argv[0]) == "esam" else "esam"
    if os.path.isabs(prog) and prog.startswith(os.getcwd() + os.sep):
        prog = os.path.relpath(prog)
    imaps = cfg.listen.imaps or cfg.listen.imap
    sub = cfg.listen.submission or cfg.listen.submissions
    return _(
        "esam_mail serving {domain}. Create a first mailbox in another terminal:\n"
        "  {command}   (type the password, then Enter)\n"
        "Then point a mail client at it: IMAP {imaps} (SSL/TLS), SMTP submission {submission} "
        "(STARTTLS), user alice, normal password; accept the self-signed certificate.",
        domain=cfg.mail.domain, command=f"{prog}{c} mailbox add alice --password-stdin",
        imaps=imaps, submission=sub,
    )


# -- mailboxes ----------------------------------------------------------------------------
@command
def add_mailbox(sub: Sub) -> None:
    p = sub.add_parser("mailbox", help=_("add, list, show, suspend, resume or close mailboxes"))
    ms = p.add_subparsers(dest="mailbox_cmd", metavar="ACTION", required=True)
    a = ms.add_parser("add", help=_("create a service mailbox (postmaster, abuse, ...) or a test mailbox"))
    a.add_argument("login")
    a.add_argument("--password-stdin", action="store_true", help=_("read the password from standard input"))
    a.add_argument("--quota-mb", type=whole(0, 1 << 30),
                   help=_("quota in MiB, 0 = unlimited (default: mail.default_quota_mb)"))
    a.add_argument("--kind", choices=["service", "personal"], default="service")
    a.add_argument("--json", action="store_true", help=json_help())
    a.set_defaults(func=handle_errors(cmd_mailbox_add))
    ls = ms.add_parser("list", help=_("list mailboxes"))
    ls.add_argument("--state", choices=["active", "suspended", "closed", "held"])
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=handle_errors(cmd_mailbox_list))
    for name, helptext in (("show", N_("show one mailbox")), ("suspend", N_("suspend (no login, mail refused)")),
                           ("resume", N_("re-activate a suspended mailbox")),
                           ("close", N_("close for good (the address is never issued again)"))):
        q = ms.add_parser(name, help=_(helptext))
        q.add_argument("login")
        q.add_argument("--json", action="store_true", help=json_help())
        if name != "show":
            q.add_argument("--actor", help=actor_help())
        if name in ("suspend", "close"):
            q.add_argument("--reason", default="", help=_("why (audit log; a suspension's reason goes to the "
                                                          "holder, with how to appeal)"))
        q.set_defaults(func=handle_errors(cmd_mailbox_state), action=name)


def _mailbox_dict(r: Any, usage: int | None = None) -> dict[str, Any]:
    d = {"id": r.id, "login": r.login, "address": r.address, "state": r.state, "kind": r.kind,
         "created_at": r.created_at.isoformat(), "quota_bytes": r.quota_bytes,
         "eds_confirmed": r.eds_confirmed}
    if usage is not None:
        d["usage_bytes"] = usage
    return d


def _owner_dict(owner: Any) -> dict[str, Any] | None:
    """Who holds the mailbox, as staff may see it: kind, masked IIN/BIN, name."""
    if owner is None:
        return None
    from esam_mail.services.accounts.identity import mask_number

    out: dict[str, Any] = {"kind": owner.kind, "name": owner.display_name}
    if owner.iin:
        out["iin"] = mask_number(owner.iin)
    if owner.bin:
        out["bin"] = mask_number(owner.bin)
    return out


def _owner_line(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return _("(none: an operator's service mailbox)")
    number = f"IIN {owner['iin']}" if "iin" in owner else f"BIN {owner['bin']}" if "bin" in owner else ""
    return ", ".join(p for p in (owner["kind"], number, owner["name"]) if p)


def cmd_mailbox_add(args: argparse.Namespace) -> int:
    from esam_mail.cli._actor import actor_for

    cfg = load_config(args)
    actor = actor_for(args, cfg)

    login = args.login.strip().lower()
    if args.kind == "personal":
        from esam_mail.services.accounts.logins import check_login

        login = check_login(login, cfg, field="login")
    else:
        _check_service_login(login)
    pw, generated = read_password(args)
    check_password(pw, login=login)

    async def go() -> int:
        from esam_mail import app

        svc = app.build(cfg)
        try:
            hashed = await asyncio.get_running_loop().run_in_executor(None, svc.hasher.hash, pw)
            quota = args.quota_mb * 1024 * 1024 if args.quota_mb is not None else None
            rec = await svc.directory.create_mailbox(login, hashed, kind=args.kind, quota_bytes=quota,
                                                     actor=actor)
            svc.store.user(rec.login_norm).create()
        finally:
            await svc.close()
        emit(args, _mailbox_dict(rec) | ({"password": pw} if generated else {}),
             _("created {address}", address=rec.address)
             + ("\n" + _("password (shown once): {password}", password=pw) if generated else ""))
        return 0

    return run_async(go())


def _check_service_login(login: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?", login) or ".." in login:
        raise ValidationError("login", _("lower-case letters, digits, '.', '-', '_'; no leading/trailing/double dot"))
    squashed = re.sub(r"[._-]", "", login)
    if squashed.isdigit() or re.search(r"\d{12}", squashed):
        raise ValidationError("login", _("a login of digits only or with 12 digits in a row looks like an IIN/BIN"))


def cmd_mailbox_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)

    async def go() -> int:
        from esam_mail.directory.sql import SqlDirectory

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            rows = await d.list(args.state)
        finally:
            await d.close()
        emit(args, [_mailbox_dict(r) for r in rows],
             "\n".join(f"{r.address:40} {r.state:10} {r.kind:9} {r.created_at:%Y-%m-%d}" for r in rows)
             or _("(no mailboxes)"))
        return 0

    return run_async(go())


async def _notify(cfg: config_mod.Config, kind: Any, address: str, reason: str = "") -> bool | None:
    """Deliver the notice *kind* into the INBOX of *address* (services/accounts/notices.py)."""
    from esam_mail import app
    from esam_mail.services.accounts.notices import Notices

    svc = app.build(cfg)
    try:
        rec = await svc.directory.get(address)
        if rec is None:
            return None
        return await Notices.from_services(svc).send(kind, rec, reason=reason)
    finally:
        await svc.close()


def cmd_mailbox_state(args: argparse.Namespace) -> int:
    from esam_mail.cli._actor import actor_for
    from esam_mail.services.accounts.notices import NoticeKind, staff_text

    cfg = load_config(args)
    actor = actor_for(args, cfg) if args.action != "show" else ("os", "-")

    async def go() -> int:
        from esam_mail.directory.sql import SqlDirectory
        from esam_mail.store.maildir import MaildirStore

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            if args.action == "show":
                rec = await d.get(args.login)
                if rec is None:
                    raise NotFound(args.login)
                usage = MaildirStore(cfg.store_path).user(rec.login_norm).usage()
                data = _mailbox_dict(rec, usage)
                data["owner"] = _owner_dict(await d.owner(rec.subscriber_id))
                emit(args, data, "\n".join(f"{k:14} {_owner_line(v) if k == 'owner' else v}"
                                           for k, v in data.items()))
                return 0
            state = {"suspend": "suspended", "resume": "active", "close": "closed"}[args.action]
            reason = getattr(args, "reason", "") or None
            rec = await d.set_state(args.login, state, actor=actor, reason=reason)
        finally:
            await d.close()
        kind = {"suspend": NoticeKind.SUSPENDED, "close": NoticeKind.CLOSED}.get(args.action)
        delivered = await _notify(cfg, kind, rec.address, reason or "") if kind else None
        data = _mailbox_dict(rec) | ({"notice_delivered": delivered} if kind else {})
        human = f"{rec.address}: {rec.state}"
        if kind is not None:
            human += "\n" + staff_text(kind, cli_language(), address=rec.address, delivered=delivered,
                                       reason=reason or "")
        emit(args, data, human)
        return 0

    return run_async(go())


@command
def add_passwd(sub: Sub) -> None:
    p = sub.add_parser("passwd", help=_("set a mailbox password"))
    p.add_argument("login")
    p.add_argument("--password-stdin", action="store_true", help=_("read the password from standard input"))
    p.add_argument("--actor", help=actor_help())
    p.set_defaults(func=handle_errors(cmd_passwd))


def cmd_passwd(args: argparse.Namespace) -> int:
    from esam_mail.cli._actor import actor_for

    cfg = load_config(args)
    kind, ident = actor_for(args, cfg)
    pw, generated = read_password(args)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.accounts.notices import NoticeKind, Notices, staff_text

        svc = app.build(cfg)
        try:
            rec = await svc.directory.get(args.login)
            if rec is None:
                raise NotFound(args.login)
            check_password(pw, login=rec.login, owner=await svc.directory.owner(rec.subscriber_id))
            hashed = await asyncio.get_running_loop().run_in_executor(None, svc.hasher.hash, pw)
            await svc.directory.set_password_hash(rec.id, hashed)
            await svc.directory.audit(kind, ident, "mailbox.passwd", rec.address)
            delivered = await Notices.from_services(svc).send(NoticeKind.PASSWORD_CHANGED, rec)
        finally:
            await svc.close()
        print(_("password changed for {address}", address=rec.address)
              + ("\n" + _("password (shown once): {password}", password=pw) if generated else ""))
        print(staff_text(NoticeKind.PASSWORD_CHANGED, cli_language(), address=rec.address, delivered=delivered))
        return 0

    return run_async(go())


@command
def add_audit(sub: Sub) -> None:
    p = sub.add_parser("audit", help=_("read the append-only audit log"))
    a = p.add_subparsers(dest="audit_cmd", metavar="ACTION", required=True)
    ls = a.add_parser("list", help=_("latest audit events"))
    ls.add_argument("--limit", type=whole(1, 100_000), default=50, help=_("newest N events (default 50)"))
    ls.add_argument("--target", help=_("only events about this address"))
    ls.add_argument("--action", help=_("only this action (glob with *)"))
    ls.add_argument("--json", action="store_true", help=json_help())
    ls.set_defaults(func=handle_errors(cmd_audit_list))


def cmd_audit_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)

    async def go() -> int:
        from esam_mail.directory.sql import SqlDirectory

        d = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            rows = await d.audit_list(args.limit, args.target, args.action)
        finally:
            await d.close()
        data = [{"at": r.at, "actor": f"{r.actor_kind}:{r.actor_id}", "action": r.action,
                 "target": r.target, "outcome": r.outcome, "detail": r.detail} for r in rows]
        emit(args, data, "\n".join(f"{r['at']:%Y-%m-%d %H:%M:%S} {r['actor']:24} {r['action']:24} "
                                    f"{r['target']} {r['outcome']}" for r in data) or _("(no events)"))
        return 0

    return run_async(go())
