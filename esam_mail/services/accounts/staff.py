"""Staff accounts: who may do what at the post office and in the operator's back office.

Roles (one per account):

=================  ==========================================================
``employee``       post-office employee: registers paper applications at the
                   office the account is bound to
``supervisor``     the same at any office, plus suspend/resume/close mailboxes
``hybrid``         hybrid-mail operator: print batches, status events, scans
``auditor``        reads the audit log; changes nothing
``admin``          everything, including staff accounts and senders
=================  ==========================================================

:data:`PERMISSIONS` maps each action to the roles allowed to do it; :meth:`StaffService.require`
is the one check every front-end (CLI, ``/staff`` console) calls.  Accounts sign in with a
password (argon2id, like mailboxes) **and** a TOTP code (RFC 6238, ``pyotp``).  An account
may be bound to an OS user name (``os_user``): the CLI then records that account as the
actor of what the OS user does.

Pure service layer: no protocol library.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp

from esam_mail.directory.official import (
    Conflict,
    Found,
    StaffRow,
    StaffTables,
    application_for,
    search_mailboxes,
)
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import AuthError, EsamError, NotFound, ValidationError
from esam_mail.services.accounts.identity import M_

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "RoleRefused",
    "StaffRecord",
    "StaffService",
]

ROLES = ("employee", "supervisor", "hybrid", "auditor", "admin")

PERMISSIONS: dict[str, frozenset[str]] = {
    "application.register": frozenset({"employee", "supervisor", "admin"}),
    "mailbox.state": frozenset({"supervisor", "admin"}),
    "hybrid.operate": frozenset({"hybrid", "supervisor", "admin"}),
    "audit.read": frozenset({"auditor", "supervisor", "admin"}),
    "search": frozenset({"employee", "supervisor", "hybrid", "auditor", "admin"}),
    "staff.manage": frozenset({"admin"}),
    "official.senders": frozenset({"admin"}),
}

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_OFFICE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class RoleRefused(EsamError):
    """The staff member's role does not allow the action (or the account is disabled)."""

    code = "role_refused"

    def __init__(self, public: str) -> None:
        super().__init__(public)
        self.public = public


@dataclass(frozen=True, slots=True)
class StaffRecord:
    id: int
    username: str
    display_name: str
    role: str
    office_code: str | None
    os_user: str | None
    active: bool
    has_totp: bool

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name, "role": self.role,
                "office": self.office_code, "os_user": self.os_user, "active": self.active}

    @property
    def actor(self) -> tuple[str, str]:
        """For the audit log: ("staff", "username@OFFICE")."""
        return ("staff", f"{self.username}@{self.office_code}" if self.office_code else self.username)


def _rec(r: StaffRow) -> StaffRecord:
    return StaffRecord(r.id, r.username, r.display_name, r.role, r.office_code, r.os_user,
                       r.active, bool(r.totp_secret))


class StaffService:
    """Staff accounts in the directory.

    Args:
        directory: the directory.
        hash_password / verify_password: the mailbox password hasher's functions
            (argon2id); verification may be slow, so front-ends call :meth:`authenticate`
            off the event loop or through the hasher's executor.
    """

    def __init__(
        self,
        directory: SqlDirectory,
        hash_password: Callable[[str], str],
        verify_password: Callable[[str, str], bool],
        forget_login: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory
        self.tables = StaffTables(directory)
        self.hash_password = hash_password
        self.verify_password = verify_password
        # the node's login cache (DirectoryAuthenticator.forget): a suspended or closed
        # mailbox must not open by a password proved moments ago, in any worker
        self.forget_login = forget_login

    async def add(
        self,
        username: str,
        display_name: str,
        role: str,
        password: str,
        *,
        office_code: str | None = None,
        os_user: str | None = None,
        actor: tuple[str, str],
    ) -> tuple[StaffRecord, str]:
        """Create an account; returns it and its TOTP secret (show once, for the authenticator app).

        Raises:
            ValidationError: naming the field.
        """
        username = username.strip().lower()
        if not _USERNAME.match(username):
            raise ValidationError("username", M_("lower-case letters, digits, '.', '_' or '-', at most 63"))
        if role not in ROLES:
            raise ValidationError("role", M_("one of {choices}", choices=", ".join(ROLES)))
        if role == "employee" and not office_code:
            raise ValidationError("office", M_("a post-office employee is bound to an office"))
        if office_code and not _OFFICE.match(office_code):
            raise ValidationError("office", M_("A-Z, 0-9, '_' or '-', at most 32"))
        if not display_name.strip():
            raise ValidationError("display_name", M_("required"))
        if len(password) < 10:
            raise ValidationError("password", M_("at least 10 characters for staff accounts"))
        secret = pyotp.random_base32()
        hashed = self.hash_password(password)
        try:
            row = await self.tables.add(actor=actor, username=username, display_name=display_name.strip(),
                                        role=role, office_code=office_code, os_user=os_user or None,
                                        password_hash=hashed, totp_secret=secret)
        except Conflict:
            raise ValidationError("username", M_("'{username}' (or OS user '{os_user}') already has an account", username=username, os_user=os_user)) from None
        return _rec(row), secret

    async def get(self, username: str) -> StaffRecord | None:
        row = await self.tables.get(username.strip().lower())
        return _rec(row) if row else None

    async def by_os_user(self, os_user: str) -> StaffRecord | None:
        row = await self.tables.by_os_user(os_user)
        return _rec(row) if row else None

    async def list(self) -> list[StaffRecord]:
        return [_rec(r) for r in await self.tables.list()]

    async def set_state(self, username: str, active: bool, *, actor: tuple[str, str]) -> StaffRecord:
        return _rec(await self.tables.change(
            username.strip().lower(), actor=actor, action="staff.enable" if active else "staff.disable",
            state="active" if active else "disabled"))

    async def set_role(self, username: str, role: str, *, office_code: str | None,
                       actor: tuple[str, str]) -> StaffRecord:
        if role not in ROLES:
            raise ValidationError("role", M_("one of {choices}", choices=", ".join(ROLES)))

        def check(row: StaffRow) -> None:
            if row.role == "employee" and not row.office_code:
                raise ValidationError("office", M_("a post-office employee is bound to an office"))

        values: dict[str, Any] = {"role": role}
        if office_code is not None:
            values["office_code"] = office_code or None
        return _rec(await self.tables.change(username.strip().lower(), actor=actor, action="staff.role",
                                             check=check, **values))

    async def authenticate(self, username: str, password: str, totp: str, *,
                           now: dt.datetime | None = None) -> StaffRecord:
        """Password and TOTP (one step of clock drift allowed); the hash check runs in a
        worker thread (argon2 is CPU-heavy).

        Raises:
            AuthError: any failure (deliberately vague); a denied audit event is written.
        """
        row = await self.tables.get(username.strip().lower())
        ok = (
            row is not None and row.active and bool(row.totp_secret)
            and pyotp.TOTP(row.totp_secret or "").verify(totp.strip(), for_time=now, valid_window=1)
            and await asyncio.to_thread(self.verify_password, password, row.password_hash)
        )
        if not ok or row is None:
            await self.directory.audit("staff", username[:128], "staff.login", username[:320], "denied")
            raise AuthError("authentication failed")
        await self.directory.audit("staff", row.username, "staff.login", row.username, "ok")
        return _rec(row)

    async def search(self, staff: StaffRecord, query: str) -> builtins.list[Found]:
        """Mailboxes by IIN, BIN, login/address or holder name (role ``search``)."""
        self.require(staff, "search")
        return await search_mailboxes(self.directory, query)

    async def set_mailbox_state(self, staff: StaffRecord, login: str, state: str, reason: str) -> Any:
        """Suspend, resume or close a mailbox with a reason (role ``mailbox.state``).

        Raises:
            RoleRefused: the role may not; ValidationError: no reason given.
        """
        try:
            self.require(staff, "mailbox.state")
        except RoleRefused as exc:
            await self.directory.audit(*staff.actor, f"mailbox.{state}", login[:320], "denied", why=exc.public)
            raise
        reason = " ".join(reason.split())
        if not reason or len(reason) > 500:
            raise ValidationError("reason", M_("say why (at most 500 characters)"))
        changed = await self.directory.set_state(login, state, actor=staff.actor, reason=reason)
        if self.forget_login is not None:
            self.forget_login(changed.login_norm)
        return changed

    async def application_form(self, staff: StaffRecord, login: str) -> tuple[int, bytes]:
        """The pre-filled paper application of a mailbox as PDF (role ``application.register``).

        Raises:
            RoleRefused; NotFound: no such mailbox or no application (a service mailbox).
        """
        from esam_mail.services.accounts.application_form import render_application_form

        self.require(staff, "application.register")
        m = await self.directory.get(login)
        app = await application_for(self.directory, m.subscriber_id if m else None)
        if m is None or app is None:
            raise NotFound(f"application of {login}")
        pdf = await asyncio.to_thread(
            render_application_form, app.data, application_id=app.id, address=m.address, office=app.office_code,
            employee=app.employee_id, submitted_at=app.submitted_at, agreement_version=app.agreement_version)
        await self.directory.audit(*staff.actor, "application.print", m.address, application=app.id)
        return app.id, pdf

    async def attach_signed_scan(self, staff: StaffRecord, login: str, pdf: bytes, folder: Path) -> Path:
        """Keep the applicant's signed paper form with the application (audited)."""
        from esam_mail.services.accounts.application_form import store_signed_scan

        self.require(staff, "application.register", office_code=None)
        m = await self.directory.get(login)
        app = await application_for(self.directory, m.subscriber_id if m else None)
        if m is None or app is None:
            raise NotFound(f"application of {login}")
        if staff.role == "employee" and app.office_code != staff.office_code:
            raise RoleRefused(f"{staff.username} works at office {staff.office_code}, not {app.office_code}")
        path = await asyncio.to_thread(store_signed_scan, folder, app.id, pdf)
        await self.directory.audit(*staff.actor, "application.scan", m.address, application=app.id, size=len(pdf))
        return path

    @staticmethod
    def require(staff: StaffRecord, action: str, *, office_code: str | None = None) -> None:
        """Refuse unless ``staff`` may do ``action`` (at ``office_code``, for office-bound roles).

        Raises:
            RoleRefused: naming the role and the action.
        """
        if not staff.active:
            raise RoleRefused(f"staff account {staff.username} is disabled")
        allowed = PERMISSIONS.get(action, frozenset())
        if staff.role not in allowed:
            raise RoleRefused(f"role {staff.role!r} of {staff.username} may not do {action}")
        if (staff.role == "employee" and office_code is not None
                and staff.office_code != office_code):
            raise RoleRefused(f"{staff.username} works at office {staff.office_code}, not {office_code}")

    async def check_employee(self, username: str, action: str, *, office_code: str | None) -> StaffRecord:
        """``--employee ID`` of the CLI: an active staff account allowed to do ``action``.

        Raises:
            ValidationError: on field ``employee``: no such account, or its role or office refuses.
        """
        rec = await self.get(username)
        if rec is None:
            raise ValidationError("employee", M_("no staff account '{username}' (esam staff add)", username=username))
        try:
            self.require(rec, action, office_code=office_code)
        except RoleRefused as exc:
            await self.directory.audit(*rec.actor, action, rec.username, "denied", why=exc.public)
            raise ValidationError("employee", exc.public) from None
        return rec
