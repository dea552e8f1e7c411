"""Who is running the CLI, for the audit log.

The actor is never free text typed by an ordinary user: it is the OS user running
``esam`` (``os:<name>``), or the staff account bound to that OS user (``esam staff add
--os-user``).  ``--actor KIND:ID`` is accepted only from an administrator: root, an OS
user listed in ``staff.cli_administrators``, or one bound to an ``admin`` staff account;
the OS user is then kept next to the named actor (``ID/os=<name>``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
from typing import Any

from esam_mail.cli._i18n import _
from esam_mail.errors import ValidationError

__all__ = ["actor_for", "is_administrator", "os_user", "staff_service"]


def os_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid{os.geteuid()}"


def staff_service(cfg: Any) -> Any:
    from esam_mail.directory.passwords import PasswordHasher
    from esam_mail.directory.sql import SqlDirectory
    from esam_mail.services.accounts.staff import StaffService

    directory = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
    hasher = PasswordHasher(cfg.auth.argon2_memory_kib, cfg.auth.argon2_time_cost, cfg.auth.argon2_parallelism)
    return StaffService(directory, hasher.hash, lambda pw, stored: hasher.verify(pw, stored)[0])


def _bound_staff(cfg: Any, user: str) -> Any:
    from esam_mail.directory.sql import dispose_loop_engines

    async def go() -> Any:
        svc = staff_service(cfg)
        try:
            return await svc.by_os_user(user)
        finally:
            await svc.directory.close()
            await dispose_loop_engines()  # as commands.run_async (not imported: it imports us)

    return asyncio.run(go())


def is_administrator(cfg: Any) -> bool:
    """Root, an OS user in ``staff.cli_administrators``, or one bound to an admin account."""
    user = os_user()
    if os.geteuid() == 0 or user in cfg.staff.cli_administrators:
        return True
    staff = _bound_staff(cfg, user)
    return staff is not None and staff.role == "admin"


def actor_for(args: argparse.Namespace, cfg: Any) -> tuple[str, str]:
    """The audit actor of this command (see the module docstring).

    Raises:
        ValidationError: on ``actor``: a non-administrator named an actor, or it is not KIND:ID.
    """
    user = os_user()
    staff = _bound_staff(cfg, user)
    given = getattr(args, "actor", None)
    if given:
        if not is_administrator(cfg):
            raise ValidationError(
                "actor", _("only an administrator may name another actor; you are recorded as {actor}",
                           actor=f"os:{user}"))
        kind, _sep, ident = given.partition(":")
        if not kind or not ident or len(given) > 100:
            raise ValidationError("actor", _("KIND:ID, e.g. employee:e-17"))
        return kind, f"{ident}/os={user}"
    if staff is not None:
        kind, ident = staff.actor
        return kind, f"{ident}/os={user}"
    return "os", user
