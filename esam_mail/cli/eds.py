"""``esam eds``: EDS confirmation of a mailbox from the command line (rules, paragraph 12).

* ``esam eds challenge LOGIN [--out FILE]``: issue a challenge; prints its text
  (what the owner signs, UTF-8) and its expiry; ``--out`` also writes the exact
  bytes to a file for signing tools (``openssl cms -sign -binary -in FILE ...``).
* ``esam eds confirm LOGIN --cms FILE [--challenge TEXT]``: verify the
  detached CMS (DER, PEM or Base64) over the challenge (default: the newest one
  issued for the mailbox) and mark the mailbox confirmed.
* ``esam eds status LOGIN``: confirmed or not, and the certificate of the
  latest confirmation.

Exit codes: 0 ok, 1 refused (the message names the reason code: ``bad_signature``,
``signer_mismatch``, ``challenge_expired``, ...), 2 bad input, 3 no such mailbox,
78 configuration.
Every refusal is in the audit log (``eds.confirm``, ``denied``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from esam_mail.cli._i18n import _
from esam_mail.cli.args import whole
from esam_mail.cli.commands import (
    Sub,
    actor_help,
    command,
    config_problems,
    emit,
    err,
    json_help,
    load_config,
    run_async,
    say,
)
from esam_mail.errors import ConfigError, EsamError, ValidationError

EX_CONFIG = 78


def _run(args: argparse.Namespace) -> int:
    """Dispatch with the errors of the EDS services turned into exit codes."""
    try:
        return int(args.eds_func(args))
    except ValidationError as e:
        err(f"{e.field}: {say(e.message)}")
        return 2
    except ConfigError as e:
        config_problems(e)
        return EX_CONFIG
    except EsamError as e:
        code = getattr(e, "code", type(e).__name__)
        public = getattr(e, "public", None) or str(e)
        if code == "no_such_mailbox":
            err(_("not found: {what}", what=args.login))
            return 3
        err(_("refused: {code}: {reason}", code=code, reason=public))
        return 1


@command
def add_eds(sub: Sub) -> None:
    p = sub.add_parser(
        "eds",
        help=_("EDS confirmation of a mailbox: challenge, confirm, status (rules, para. 12)"),
        description=_("Confirm a mailbox with the owner's electronic digital signature (NCA RK): "
                      "issue a challenge, have the owner sign it (detached CMS), submit the CMS."),
    )
    es = p.add_subparsers(dest="eds_cmd", metavar="ACTION", required=True)

    c = es.add_parser("challenge", help=_("issue a challenge for LOGIN and print the text to sign"))
    c.add_argument("login", help=_("the mailbox login or address"))
    c.add_argument("--out", metavar="FILE", help=_("also write the exact bytes to sign to FILE"))
    c.add_argument("--json", action="store_true", help=json_help())
    c.set_defaults(func=_run, eds_func=cmd_challenge)

    f = es.add_parser("confirm", help=_("verify a signed challenge and mark LOGIN as EDS-confirmed"))
    f.add_argument("login", help=_("the mailbox login or address"))
    f.add_argument("--cms", metavar="FILE", required=True,
                   help=_("the detached CMS signature over the challenge (DER, PEM or Base64)"))  # fmt: skip
    f.add_argument("--challenge", metavar="TEXT",
                   help=_("the challenge text that was signed (default: the newest one for LOGIN)"))  # fmt: skip
    f.add_argument("--actor", help=actor_help())
    f.add_argument("--json", action="store_true", help=json_help())
    f.set_defaults(func=_run, eds_func=cmd_confirm)

    s = es.add_parser("status", help=_("is LOGIN EDS-confirmed, and by which certificate"))
    s.add_argument("login", help=_("the mailbox login or address"))
    s.add_argument("--json", action="store_true", help=json_help())
    s.set_defaults(func=_run, eds_func=cmd_status)

    tp = es.add_parser("test-pki", help=_("STAGING ONLY: an NCA-shaped test PKI for eds.test_ca_mode"),
                       description=_("Make a test root and intermediate CA shaped like the NCA's, and "
                                     "certificates for individuals and legal entities whose IIN/BIN pass the "
                                     "checksum. With eds.test_ca_mode = true the server trusts exactly this PKI. "
                                     "Never in production."))
    ts = tp.add_subparsers(dest="pki_cmd", metavar="ACTION", required=True)
    ti = ts.add_parser("init", help=_("make the root and intermediate in <data_dir>/eds/test-pki"))
    ti.add_argument("--force", action="store_true", help=_("replace an existing test PKI"))
    ti.add_argument("--json", action="store_true", help=json_help())
    ti.set_defaults(func=_run, eds_func=cmd_test_pki_init)
    tc = ts.add_parser("issue", help=_("issue a signing (or auth) certificate, PEM + PKCS#12"))
    tc.add_argument("--iin", required=True, help=_("the holder's IIN (checked: structure and check digit)"))
    tc.add_argument("--surname", required=True)
    tc.add_argument("--given-name", required=True)
    tc.add_argument("--patronymic")
    tc.add_argument("--bin", help=_("a legal entity's BIN: the certificate of its employee"))
    tc.add_argument("--organization", help=_("the legal entity's name"))
    tc.add_argument("--role", default="first_head", choices=["first_head", "signer", "employee"],
                    help=_("the employee's role (first_head and signer may sign for the entity)"))
    tc.add_argument("--usage", default="sign", choices=["sign", "auth"])
    tc.add_argument("--days", type=whole(1, 36_500), default=365, help=_("validity in days (default 365)"))
    tc.add_argument("--out", metavar="DIR", help=_("where to write (default: <data_dir>/eds/test-pki/issued)"))
    tc.add_argument("--json", action="store_true", help=json_help())
    tc.set_defaults(func=_run, eds_func=cmd_test_pki_issue)


def test_pki_folder(cfg: Any) -> Path:
    from esam_mail.services.accounts.confirmation import test_pki_folder as folder

    return folder(cfg)


def cmd_test_pki_init(args: argparse.Namespace) -> int:
    from esam_mail.services.accounts.test_pki import init_test_pki

    cfg = load_config(args)
    try:
        pki = init_test_pki(test_pki_folder(cfg), force=args.force)
    except FileExistsError:
        raise ValidationError("test-pki", _("{path} already holds a test PKI (root.pem); give --force to replace it",
                                            path=test_pki_folder(cfg))) from None
    data = {"folder": str(pki.folder), "root": str(pki.root_path),
            "root_subject": pki.root.cert.subject.rfc4514_string(),
            "intermediate_subject": pki.intermediate.cert.subject.rfc4514_string()}
    emit(args, data, _("test PKI in {path} (TEST ONLY, never in production)", path=pki.folder) + "\n"
         + _("root: {subject}", subject=data["root_subject"]) + "\n"
         + _("intermediate: {subject}", subject=data["intermediate_subject"]) + "\n"
         + _("set eds.test_ca_mode = true (and no eds.trust_anchors) to trust it"))
    return 0


def cmd_test_pki_issue(args: argparse.Namespace) -> int:
    from esam_mail.services.accounts.test_pki import issue_test_certificate, load_test_pki

    cfg = load_config(args)
    folder = test_pki_folder(cfg)
    try:
        pki = load_test_pki(folder)
    except FileNotFoundError:
        raise ValidationError("test-pki", _("no test PKI in {path}: run {command} first", path=folder,
                                            command="`esam eds test-pki init`")) from None
    out = Path(args.out) if args.out else folder / "issued"
    files = issue_test_certificate(pki, out, iin=args.iin, surname=args.surname, given_name=args.given_name,
                                   patronymic=args.patronymic, bin=args.bin, organization=args.organization,
                                   role=args.role, usage=args.usage, days=args.days)
    data = {k: str(v) for k, v in files.items()} | {"p12_password": "test"}
    emit(args, data, "\n".join(f"{k:6} {v}" for k, v in files.items()) + "\n"
         + _("PKCS#12 password: {password}", password="test"))  # noqa: S106 (the test PKI's)
    return 0


def cmd_challenge(args: argparse.Namespace) -> int:
    from esam_mail.cli._actor import actor_for

    cfg = load_config(args)
    actor = actor_for(args, cfg)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.accounts.online import eds_services

        svc = app.build(cfg)
        try:
            issued = await eds_services(svc).confirmations.issue(args.login, actor=actor)
        finally:
            await svc.close()
        if args.out:
            Path(args.out).write_bytes(issued.content)
        emit(
            args,
            {**issued.to_dict(), "address": issued.address},
            f"{issued.text}\n" + _("expires at {time}", time=issued.expires_at.isoformat()),
        )
        return 0

    return run_async(go())


def cmd_confirm(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        cms = Path(args.cms).read_bytes()
    except OSError as e:
        raise ValidationError("cms", _("cannot read {path} ({reason})", path=args.cms, reason=e.strerror)) from None
    from esam_mail.cli._actor import actor_for

    actor = actor_for(args, cfg)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.accounts.online import eds_services

        svc = app.build(cfg)
        try:
            done = await eds_services(svc).confirmations.confirm(
                args.login, cms, challenge=args.challenge, actor=actor
            )
        finally:
            await svc.close()
        emit(
            args,
            done.to_dict(),
            _("{address}: EDS-confirmed", address=done.address) + "\n"
            + _("certificate: serial {serial}, issuer {issuer}", serial=done.serial, issuer=done.issuer) + "\n"
            + _("fingerprint (SHA-256): {fingerprint}", fingerprint=done.fingerprint),
        )
        return 0

    return run_async(go())


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args)

    async def go() -> int:
        from esam_mail import app
        from esam_mail.services.accounts.online import eds_services

        svc = app.build(cfg)
        try:
            st = await eds_services(svc).confirmations.status(args.login)
        finally:
            await svc.close()
        lines = [_("{address}: EDS-confirmed", address=st.address) if st.confirmed
                 else _("{address}: not confirmed", address=st.address)]
        if st.latest is not None:
            c = st.latest
            lines += [
                _("confirmed at: {time}", time=c.confirmed_at.isoformat()),
                _("certificate: serial {serial}, issuer {issuer}", serial=c.serial, issuer=c.issuer),
                _("valid: {start} .. {end}", start=c.not_before.isoformat(), end=c.not_after.isoformat()),
                _("fingerprint (SHA-256): {fingerprint}", fingerprint=c.fingerprint),
                _("IIN: {iin}  BIN: {bin}", iin=c.signer_iin or "-", bin=c.signer_bin or "-"),
            ]
        emit(args, st.to_dict(), "\n".join(lines))
        return 0

    return run_async(go())
