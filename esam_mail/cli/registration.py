"""Office-channel registration commands (rules, paragraphs 5-7, 11, 13 and the appendix).

* ``esam register individual ...`` and ``esam register legal-entity ...``: a
  post-office employee enters the paper application (para. 6 sub-para. 2);
  the flags are the fields of the appendix's forms, ``--from-json FILE`` reads
  them from a file instead.  The mailbox works over IMAP and SMTP when the
  command returns (para. 7).
* ``esam agreement show``: the user agreement in force, its version and
  SHA-256 (para. 5).
* ``esam mailbox approve LOGIN``: release a mailbox held for a manual registry
  check (para. 13).

Exit codes: 0 ok, 2 bad input (one ``esam: field: message`` line per problem;
nothing is written), 3 not found, 78 configuration problems.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from esam_mail.cli._i18n import N_, _
from esam_mail.cli.commands import (
    Sub,
    actor_help,
    command,
    config_problems,
    emit,
    err,
    json_help,
    load_config,
    password_from_stdin,
    run_async,
    say,
)
from esam_mail.errors import ConfigError, LoginTaken, NotFound, ValidationError

EX_CONFIG = 78

# (flag, dotted field of the application) for each form.  A flag whose value is
# absent is left out of the application, so the validator names what is missing.
_ADDRESS = ("region", "locality", "street", "house", "apartment", "postcode")
#: The address parts in the --help texts ("residence address: {part}").
_ADDRESS_PARTS = {"region": N_("region"), "locality": N_("locality"), "street": N_("street"),
                  "house": N_("house"), "apartment": N_("apartment"), "postcode": N_("postcode")}

INDIVIDUAL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--surname", "surname", N_("surname (as in the identity document)")),
    ("--given-name", "given_name", N_("given name")),
    ("--patronymic", "patronymic", N_("patronymic (optional)")),
    ("--iin", "iin", N_("individual identification number, 12 digits")),
    ("--birth-date", "birth_date", N_("birth date YYYY-MM-DD (checked against the IIN)")),
    ("--sex", "sex", N_("M or F (optional; checked against the IIN)")),
    ("--doc-type", "id_document.type", N_("identity document: id_card, passport, residence_permit, ...")),
    ("--doc-number", "id_document.number", N_("identity document number")),
    ("--doc-issuer", "id_document.issuer", N_("who issued the document")),
    ("--doc-issue-date", "id_document.issue_date", N_("issue date YYYY-MM-DD")),
    ("--doc-expiry-date", "id_document.expiry_date", N_("expiry date YYYY-MM-DD (optional)")),
    *((f"--{k}", f"residence_address.{k}", N_("residence address: {part}")) for k in _ADDRESS),
    ("--home-phone", "home_phone", N_("home phone (optional)")),
    ("--mobile-phone", "mobile_phone", N_("mobile phone, e.g. +7 701 123 45 67")),
    ("--username", "username", N_("requested user name (the address is USERNAME@domain)")),
)

LEGAL_ENTITY_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--name", "name", N_("full name of the legal entity")),
    ("--bin", "bin", N_("business identification number, 12 digits")),
    ("--cert-number", "registration.number", N_("state-registration certificate number")),
    ("--cert-date", "registration.date", N_("state-registration certificate date YYYY-MM-DD")),
    ("--cert-issuer", "registration.issuer", N_("who issued the certificate (optional)")),
    *((f"--legal-{k}", f"legal_address.{k}", N_("legal address: {part}")) for k in _ADDRESS),
    *((f"--actual-{k}", f"actual_address.{k}", N_("actual address: {part}")) for k in _ADDRESS),
    ("--work-phone", "work_phone", N_("work phone")),
    ("--mobile-phone", "mobile_phone", N_("mobile phone")),
    ("--username", "username", N_("requested user name (the address is USERNAME@domain)")),
    ("--rep-surname", "representative.surname", N_("representative's surname (optional)")),
    ("--rep-given-name", "representative.given_name", N_("representative's given name")),
    ("--rep-patronymic", "representative.patronymic", N_("representative's patronymic")),
    ("--rep-iin", "representative.iin", N_("representative's IIN")),
    ("--signer-role", "signer_role", N_("who signs the application: head (the default) or representative "
     "(under a power of attorney: give --poa-number and --poa-date)")),
    ("--poa-number", "poa_number", N_("power of attorney number (representative only)")),
    ("--poa-date", "poa_date", N_("power of attorney date YYYY-MM-DD (representative only)")),
)

# Parts that are always sent (possibly empty) so that each missing field is named.
_REQUIRED_PARTS = {
    "individual": ("id_document", "residence_address"),
    "legal_entity": ("registration", "legal_address", "actual_address"),
}

_OTHER_FLAGS = {
    "office": "--office",
    "employee": "--employee",
    "accept_agreement": "--accept-agreement",
    "password": "--password-stdin",
    "from_json": "--from-json",
}


def _dest(flag: str) -> str:
    return "f_" + flag.lstrip("-").replace("-", "_")


def _flag_of(kind: str, field: str) -> str | None:
    table = INDIVIDUAL_FLAGS if kind == "individual" else LEGAL_ENTITY_FLAGS
    for flag, dotted, _help in table:
        if dotted == field:
            return flag
    return _OTHER_FLAGS.get(field)


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the service's errors into exit codes and ``esam: field: message`` lines."""

    def wrapper(args: argparse.Namespace) -> int:
        kind = getattr(args, "kind", "individual")
        try:
            return func(args)
        except ValidationError as e:
            for item in getattr(e, "errors", None) or (e,):
                flag = _flag_of(kind, item.field)
                err(f"{item.field}: {say(item.message)}" + (f" ({flag})" if flag else ""))
            return 2
        except LoginTaken as e:
            err("username: " + _("login taken: {login} was issued before and is never issued again",
                                 login=e.login) + " (--username)")
            return 2
        except NotFound as e:
            err(_("not found: {what}", what=e))
            return 3
        except ConfigError as e:
            config_problems(e)
            return EX_CONFIG

    return wrapper


# -- register -------------------------------------------------------------------------------
@command
def add_register(sub: Sub) -> None:
    p = sub.add_parser(
        "register",
        help=_("register a mailbox from a paper application (post office channel)"),
        description=_("Register a mailbox from an application entered at a post office (rules, para. 6). "
                      "The mailbox works over IMAP and SMTP as soon as the command returns."),
    )
    rs = p.add_subparsers(dest="register_cmd", metavar="KIND", required=True)
    for kind, name, flags, helptext in (
        ("individual", "individual", INDIVIDUAL_FLAGS, N_("register an individual (IIN)")),
        ("legal_entity", "legal-entity", LEGAL_ENTITY_FLAGS, N_("register a legal entity (BIN)")),
    ):
        q = rs.add_parser(name, help=_(helptext))
        form = q.add_argument_group(_("application form (appendix of the rules)"))
        for flag, _field, fhelp in flags:
            part = flag.rsplit("-", 1)[-1]
            form.add_argument(flag, dest=_dest(flag), metavar="TEXT",
                              help=_(fhelp, part=_(_ADDRESS_PARTS[part])) if "{part}" in fhelp else _(fhelp))
        q.add_argument(
            "--from-json",
            metavar="FILE",
            help=_("read the form's fields from a JSON file (flags given too override it)"),
        )
        q.add_argument("--office", help=_("code of the post office where the application was submitted"))
        q.add_argument("--employee", help=_("id of the employee entering the application"))
        q.add_argument(
            "--accept-agreement",
            metavar="VERSION",
            help=_("the user-agreement version the applicant signed (see `esam agreement show`)"),
        )
        q.add_argument(
            "--password-stdin",
            action="store_true",
            help=_("read the applicant's password from standard input (else one is generated and printed once)"),
        )
        q.add_argument(
            "--language",
            choices=["kk", "ru", "en"],
            help=_("the applicant's language: the agreement edition they signed, and the language of "
                   "their notices (default kk)"),
        )
        q.add_argument("--json", action="store_true", help=json_help())
        q.set_defaults(func=_guarded(cmd_register), kind=kind, flags=flags)


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def application_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The raw application: the ``--from-json`` file, then the flags given on top."""
    raw: dict[str, Any] = {}
    if args.from_json:
        try:
            loaded = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        except OSError as e:
            raise ValidationError("from_json", _("cannot read {path} ({reason})", path=args.from_json,
                                                 reason=e.strerror)) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValidationError("from_json", _("{path} is not valid UTF-8 JSON ({reason})", path=args.from_json,
                                                 reason=e)) from None
        if not isinstance(loaded, dict):
            raise ValidationError("from_json", _("the file must hold one JSON object (the application)"))
        raw = loaded
    for part in _REQUIRED_PARTS[args.kind]:
        raw.setdefault(part, {})
    for flag, dotted, _help in args.flags:
        value = getattr(args, _dest(flag))
        if value is not None:
            _set(raw, dotted, value)
    return raw


def _read_password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    return password_from_stdin()


def cmd_register(args: argparse.Namespace) -> int:
    from esam_mail.cli.staff import verify_employee

    cfg = load_config(args)
    raw = application_from_args(args)
    employee = args.employee
    if employee:  # a staff account allowed to register applications at this office
        employee = verify_employee(cfg, employee, "application.register", args.office)
    password = _read_password(args)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.accounts.notices import Notices
        from esam_mail.services.accounts.registration import RegistrationService

        svc = app.build(cfg)
        try:
            service = RegistrationService(svc.directory, svc.store, svc.hasher, cfg,
                                          notices=Notices.from_services(svc))
            register = (
                service.register_individual if args.kind == "individual" else service.register_legal_entity
            )
            done = await register(
                raw,
                channel="office",
                office_code=args.office,
                employee_id=employee,
                accepted_agreement=args.accept_agreement,
                password=password,
                language=args.language,
            )
        finally:
            await svc.close()
        lines = [_("registered {address} ({status})", address=done.address, status=done.status),
                 _("login: {login}", login=done.login)]
        if done.password is not None:
            lines.append(_("password (shown once): {password}", password=done.password))
        if done.notice_delivered is not None:
            from esam_mail.cli.commands import cli_language
            from esam_mail.services.accounts.notices import NoticeKind, staff_text

            lines.append(staff_text(NoticeKind.WELCOME, cli_language(), address=done.address,
                                    delivered=done.notice_delivered))
        if done.status == "held":
            lines.append(_("held for a manual check of the state registry: no login and no mail until {command}",
                           command=f"`esam mailbox approve {done.login}`"))
        emit(args, done.to_dict(), "\n".join(lines))
        return 0

    return run_async(go())


# -- agreement ------------------------------------------------------------------------------
@command
def add_agreement(sub: Sub) -> None:
    p = sub.add_parser("agreement", help=_("the user agreement applicants accept (rules, para. 5)"))
    a = p.add_subparsers(dest="agreement_cmd", metavar="ACTION", required=True)
    s = a.add_parser("show", help=_("print the agreement in force with its version and SHA-256"))
    s.add_argument("--json", action="store_true", help=json_help())
    s.set_defaults(func=_guarded(cmd_agreement_show))


def cmd_agreement_show(args: argparse.Namespace) -> int:
    from esam_mail.services.accounts.registration import agreement_sha256, agreement_text

    cfg = load_config(args)
    text = agreement_text(cfg)
    digest = agreement_sha256(cfg)
    version = cfg.registration.agreement_version
    emit(
        args,
        {"version": version, "sha256": digest, "file": str(cfg.agreement_path), "text": text},
        _("version: {version}", version=version) + f"\nsha256: {digest}\n\n{text.rstrip()}",
    )
    return 0


# -- mailbox approve ------------------------------------------------------------------------
def _subparsers_of(parser: argparse.ArgumentParser) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


@command
def add_mailbox_approve(sub: Sub) -> None:
    mailbox = sub.choices.get("mailbox")
    ms = _subparsers_of(mailbox) if mailbox is not None else None
    if ms is None:  # the mailbox command lives in commands.py; stand alone if it is missing
        mailbox = sub.add_parser("mailbox", help=_("mailbox administration"))
        ms = mailbox.add_subparsers(dest="mailbox_cmd", metavar="ACTION", required=True)
    q = ms.add_parser("approve", help=_("activate a mailbox held for a manual registry check (audited)"))
    q.add_argument("login")
    q.add_argument("--actor", help=actor_help())
    q.add_argument("--json", action="store_true", help=json_help())
    q.set_defaults(func=_guarded(cmd_mailbox_approve))


def cmd_mailbox_approve(args: argparse.Namespace) -> int:
    from esam_mail.cli._actor import actor_for

    cfg = load_config(args)
    actor = actor_for(args, cfg)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.accounts.notices import Notices
        from esam_mail.services.accounts.registration import RegistrationService

        svc = app.build(cfg)
        try:
            service = RegistrationService(svc.directory, svc.store, svc.hasher, cfg,
                                          notices=Notices.from_services(svc))
            rec = await service.approve(args.login, actor=actor)
        finally:
            await svc.close()
        emit(
            args,
            {"login": rec.login, "address": rec.address, "state": rec.state},
            f"{rec.address}: {rec.state}",
        )
        return 0

    return run_async(go())
