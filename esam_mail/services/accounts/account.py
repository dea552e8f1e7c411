"""The subscriber's own account: log in, data on file, password change, login history,
closing the mailbox with a cooling-off period and an export of the mail first.

Front-end neutral (the web's ``/account`` pages use it; nothing here speaks HTTP).

* Logins go through the same :class:`~esam_mail.services.auth.DirectoryAuthenticator` as
  IMAP and SMTP (``service="web"``), so the brute-force counters and lock-out are shared.
  Each web login is audited (``account.login``); the login history shows these and the
  IMAP/SMTP logins the authenticator audits (``auth.login``).
* :func:`fingerprint` of the stored password hash goes into the web session: when the
  password changes, every other session of that mailbox ends at its next request.
* Closing: :meth:`AccountService.request_closure` (password again, and the address typed
  out) writes an export of every folder (a ZIP of ``.eml`` files, in a worker thread) and
  records ``account.close_requested`` with the date the mailbox closes; until then the
  owner can download the export and cancel.  :meth:`AccountService.close_due` (run
  periodically by the server) closes the mailboxes whose date has come.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esam_mail import fsio
from esam_mail.errors import AuthError, EsamError, NotFound, ValidationError
from esam_mail.log import event
from esam_mail.services.accounts.application import ValidationErrors
from esam_mail.services.accounts.identity import M_
from esam_mail.services.accounts.password_policy import check_password

__all__ = ["AccountService", "Closure", "HybridLetter", "LoginEvent", "Profile", "close_due_loop", "fingerprint", "login_recorder"]

log = logging.getLogger(__name__)



def fingerprint(password_hash: str) -> str:
    """A short digest of the stored hash: changes exactly when the password changes."""
    return hashlib.sha256(b"esam-session\0" + password_hash.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Profile:
    id: int  # the mailbox row
    login: str
    address: str
    state: str
    kind: str  # individual | legal_entity | service
    eds_confirmed: bool
    created_at: dt.datetime
    display_name: str
    iin: str | None
    bin: str | None
    data: dict[str, Any]
    quota_bytes: int | None
    fingerprint: str


@dataclass(frozen=True)
class LoginEvent:
    at: dt.datetime
    peer: str
    service: str
    outcome: str


@dataclass(frozen=True)
class HybridLetter:
    tracking_number: str
    accepted_at: dt.datetime
    pages: int
    events: list[tuple[dt.datetime, str]]  # (time, HybridEvent value), oldest first

    @property
    def status(self) -> str:
        return self.events[-1][1] if self.events else "ACCEPTED"


@dataclass(frozen=True)
class Closure:
    requested_at: dt.datetime
    effective_at: dt.datetime
    export: str  # file name under the export directory


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


class AccountService:
    def __init__(self, directory: Any, hasher: Any, authenticator: Any, store: Any, *, export_dir: Path,
                 cooling_off_days: int = 14, clock: Any = None) -> None:
        self.directory = directory
        self.hasher = hasher
        self.authenticator = authenticator
        self.store = store
        self.export_dir = Path(export_dir)
        self.cooling_off = dt.timedelta(days=cooling_off_days)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        #: called with the mailbox record after a password change (the notice e-mail, notices.py)
        self.on_password_changed: list[Any] = []

    # -- logging in ------------------------------------------------------------------------

    async def login(self, username: str, password: str, *, peer: str) -> Profile:
        """Check the password (shared brute-force limits).  Raises AuthError."""
        principal = await self.authenticator.authenticate(username, password, peer=peer, service="web")
        await self.directory.audit("subscriber", principal.login, "account.login", principal.address,
                                   peer=peer, service="web")
        profile = await self.profile(principal.login)
        if profile is None:
            raise AuthError("vanished")
        return profile

    async def profile(self, login: str) -> Profile | None:
        """What is on file for the mailbox, or None if it is unknown or not active."""
        rec = await self.directory.get(login)
        if rec is None or rec.state != "active":
            return None
        sub = await self.directory.subscriber(rec.subscriber_id) if rec.subscriber_id is not None else None
        return Profile(
            id=rec.id, login=rec.login_norm, address=rec.address, state=rec.state, kind=sub.kind if sub else "service",
            eds_confirmed=bool(rec.eds_confirmed), created_at=rec.created_at,
            display_name=sub.display_name if sub else rec.address, iin=sub.iin if sub else None,
            bin=sub.bin if sub else None, data=dict(sub.data or {}) if sub else {},
            quota_bytes=rec.quota_bytes, fingerprint=fingerprint(rec.password_hash),
        )

    # -- password ---------------------------------------------------------------------------

    async def change_password(self, login: str, current: str, new: str, repeat: str, *, peer: str) -> Profile:
        """Change the password after checking the current one; every problem at once.

        Raises:
            ValidationErrors: ``current_password``, ``new_password``, ``new_password2``.
        """
        problems: list[ValidationError] = []
        profile = await self.profile(login)
        if profile is None:
            raise NotFound(login)
        names = [profile.display_name, *(profile.data.get(k) for k in ("surname", "given_name", "patronymic", "name"))]
        try:
            check_password(new, login=profile.login, names=names, ids=[profile.iin, profile.bin],
                           field_name="new_password")
        except ValidationError as e:
            problems.append(e)
        if new != repeat:
            problems.append(ValidationError("new_password2", M_("the two new passwords differ")))
        if new and new == current:
            problems.append(ValidationError("new_password", M_("the new password must differ from the current one")))
        try:
            await self.authenticator.authenticate(login, current, peer=peer, service="web")
        except AuthError:
            problems.insert(0, ValidationError("current_password", M_("the current password is wrong")))
        if problems:
            raise ValidationErrors(problems)
        rec = await self.directory.get(login)
        if rec is None:
            raise NotFound(login)
        hashed = await asyncio.get_running_loop().run_in_executor(None, self.hasher.hash, new)
        await self.directory.set_password_hash(rec.id, hashed)
        self.authenticator.forget(rec.login_norm)
        await self.directory.audit("subscriber", rec.login_norm, "mailbox.passwd", rec.address, peer=peer,
                                   service="web")
        event(log, "account.passwd", user=rec.login_norm, peer=peer)
        for hook in self.on_password_changed:
            try:
                await hook(rec)
            except Exception:  # a notice never undoes the change
                log.exception("account: password-change hook failed")
        profile = await self.profile(rec.login_norm)
        assert profile is not None
        return profile

    # -- history ----------------------------------------------------------------------------

    async def history(self, address: str, limit: int = 50) -> list[LoginEvent]:
        rows = await self.directory.audit_list(limit, target=address, action="*.login")
        return [LoginEvent(_aware(r.at), str((r.detail or {}).get("peer", "?")),
                           str((r.detail or {}).get("service", "?")), r.outcome) for r in rows]

    # -- hybrid letters -------------------------------------------------------------------------

    async def hybrid_letters(self, address: str, hybrid: Any, limit: int = 20) -> list[HybridLetter]:
        """The owner's latest hybrid (e-mail -> paper) letters with their status events."""
        if hybrid is None:
            return []
        rows = await self.directory.audit_list(limit, target=address, action="hybrid.accepted")
        out = []
        for r in rows:
            tracking = str((r.detail or {}).get("tracking", ""))
            if not tracking:
                continue
            events = [(_aware(e.time), str(e.event)) for e in await hybrid.history(tracking)]
            out.append(HybridLetter(tracking, _aware(r.at), int((r.detail or {}).get("pages", 0)), events))
        return out

    # -- closing ------------------------------------------------------------------------------

    async def closure(self, address: str) -> Closure | None:
        """The pending closure of the mailbox, if the owner asked for one and did not cancel."""
        rows = await self.directory.audit_list(1, target=address, action="account.close*")
        row = rows[0] if rows else None
        if row is None or row.action != "account.close_requested":
            return None
        d = row.detail or {}
        return Closure(_aware(row.at), dt.datetime.fromisoformat(d["effective_at"]), str(d.get("export", "")))

    async def request_closure(self, login: str, password: str, typed_address: str, *, peer: str) -> Closure:
        """Export the mail, then schedule the closure after the cooling-off period.

        Raises:
            ValidationErrors: ``password`` wrong, ``confirm_address`` not the address.
        """
        rec = await self.directory.get(login)
        if rec is None or rec.state != "active":
            raise NotFound(login)
        problems: list[ValidationError] = []
        if typed_address.strip().lower() != rec.address.lower():
            problems.append(ValidationError("confirm_address", M_("type your mailbox address exactly")))
        try:
            await self.authenticator.authenticate(login, password, peer=peer, service="web")
        except AuthError:
            problems.insert(0, ValidationError("password", M_("the password is wrong")))
        if problems:
            raise ValidationErrors(problems)
        pending = await self.closure(rec.address)
        if pending is not None:
            return pending
        now = self.clock()
        name = await asyncio.to_thread(self._export, rec.login_norm, now)
        effective = now + self.cooling_off
        await self.directory.audit("subscriber", rec.login_norm, "account.close_requested", rec.address,
                                   peer=peer, effective_at=effective.isoformat(), export=name)
        event(log, "account.close_requested", user=rec.login_norm, effective_at=effective.isoformat())
        return Closure(now, effective, name)

    async def cancel_closure(self, login: str, *, peer: str) -> None:
        rec = await self.directory.get(login)
        if rec is None:
            raise NotFound(login)
        if await self.closure(rec.address) is not None:
            await self.directory.audit("subscriber", rec.login_norm, "account.close_cancelled", rec.address,
                                       peer=peer)

    def export_file(self, login: str, name: str) -> Path | None:
        """The export file ``name`` of ``login`` (None if the name is not one of theirs)."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return None
        path = self.export_dir / login / name
        return path if path.is_file() else None

    def _export(self, login: str, now: dt.datetime) -> str:
        """Every folder's messages as ``<folder>/<uid>.eml`` in a ZIP (runs in a thread)."""
        user = self.store.user(login)
        folder_dir = self.export_dir / login
        folder_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"mail-{now.strftime('%Y%m%dT%H%M%SZ')}.zip"
        with (
            fsio.atomic_file(folder_dir / name, mode=0o600) as fh,
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        ):
            if user.exists():
                for info in user.list_folders():
                    if info.noselect:
                        continue
                    fname = info.name
                    try:
                        folder = user.folder(fname)
                        messages = folder.sync()
                    except (OSError, KeyError, EsamError):
                        continue
                    safe = fname.replace("/", "_").replace("\\", "_") or "INBOX"
                    for m in messages:
                        try:
                            data = folder.read(m.uid)
                        except (OSError, KeyError, EsamError):
                            continue  # expunged meanwhile
                        zf.writestr(f"{safe}/{m.uid}.eml", data)
        return name

    async def close_due(self) -> list[str]:
        """Close every mailbox whose cooling-off period has ended; returns their addresses."""
        now = self.clock()
        rows = await self.directory.audit_list(100_000, action="account.close*")  # newest first
        latest: dict[str, Any] = {}
        for r in rows:
            latest.setdefault(r.target, r)
        closed = []
        for address, r in latest.items():
            if r.action != "account.close_requested":
                continue
            if dt.datetime.fromisoformat((r.detail or {})["effective_at"]) > now:
                continue
            rec = await self.directory.get(r.actor_id)
            if rec is None or rec.state == "closed":
                continue
            await self.directory.set_state(rec.login_norm, "closed", actor=("subscriber", rec.login_norm))
            self.authenticator.forget(rec.login_norm)
            closed.append(address)
            event(log, "account.closed", user=rec.login_norm)
        return closed


def login_recorder(directory: Any) -> Any:
    """An ``on_success`` hook of the authenticator that audits IMAP and SMTP logins
    (``auth.login``) for the login history, without delaying the login itself."""
    pending: set[asyncio.Task[None]] = set()

    def record(principal: Any, peer: str, service: str) -> None:
        if service == "web":
            return  # the account service audits web logins itself
        task = asyncio.ensure_future(
            directory.audit("subscriber", principal.login, "auth.login", principal.address,
                            peer=peer, service=service))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return record


async def close_due_loop(accounts: AccountService, interval: float = 3600.0) -> None:
    """Run :meth:`AccountService.close_due` now and then (a task of ``esam serve``)."""
    while True:
        try:
            await accounts.close_due()
        except Exception:
            log.exception("closing due mailboxes failed")
        await asyncio.sleep(interval)
