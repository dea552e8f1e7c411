"""Directory queries of the second factor: TOTP secrets, recovery codes, app passwords.

The policy (code checks, what IMAP/SMTP accept) lives in ``services/accounts/second_factor.py``;
this module holds the SQL, so that SQLAlchemy stays behind ``directory/``.  Spending a
TOTP step or a recovery code is one conditional UPDATE: of two concurrent logins with the
same code, exactly one wins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from esam_mail.directory.models import AppPassword, RecoveryCode, SecondFactor, utcnow
from esam_mail.directory.sql import SqlDirectory

__all__ = ["AppPasswordRow", "MfaTables"]


@dataclass(frozen=True)
class AppPasswordRow:
    id: int
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class MfaTables:
    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    async def secret(self, mailbox_id: int) -> tuple[str, int] | None:
        """``(base32 secret, last accepted step)`` or None when the second factor is off."""
        async with self.d.readers() as s:
            row = await s.get(SecondFactor, mailbox_id)
            return (row.totp_secret, int(row.last_step)) if row is not None else None

    async def enable(self, mailbox_id: int, secret: str, step: int, recovery_digests: list[str]) -> None:
        async with self.d.transaction() as s:
            await s.execute(delete(RecoveryCode).where(RecoveryCode.mailbox_id == mailbox_id))
            await s.execute(delete(SecondFactor).where(SecondFactor.mailbox_id == mailbox_id))
            s.add(SecondFactor(mailbox_id=mailbox_id, totp_secret=secret, last_step=step, enabled_at=utcnow()))
            s.add_all(RecoveryCode(mailbox_id=mailbox_id, digest=d) for d in recovery_digests)

    async def disable(self, mailbox_id: int) -> None:
        """Second factor off: its recovery codes and every app password go too."""
        async with self.d.transaction() as s:
            for table in (AppPassword, RecoveryCode, SecondFactor):
                await s.execute(delete(table).where(table.mailbox_id == mailbox_id))

    async def spend_step(self, mailbox_id: int, step: int) -> bool:
        """Accept TOTP step ``step`` once: True if it is newer than the last accepted one."""
        async with self.d.transaction() as s:
            res = await s.execute(update(SecondFactor)
                                  .where(SecondFactor.mailbox_id == mailbox_id, SecondFactor.last_step < step)
                                  .values(last_step=step))
            return bool(getattr(res, "rowcount", 0) == 1)

    async def spend_recovery(self, mailbox_id: int, digest: str) -> bool:
        async with self.d.transaction() as s:
            res = await s.execute(update(RecoveryCode)
                                  .where(RecoveryCode.mailbox_id == mailbox_id, RecoveryCode.digest == digest,
                                         RecoveryCode.used_at.is_(None))
                                  .values(used_at=utcnow()))
            return bool(getattr(res, "rowcount", 0) == 1)

    async def recovery_left(self, mailbox_id: int) -> int:
        async with self.d.readers() as s:
            q = select(func.count()).select_from(RecoveryCode).where(
                RecoveryCode.mailbox_id == mailbox_id, RecoveryCode.used_at.is_(None))
            return int((await s.execute(q)).scalar_one())

    async def add_app_password(self, mailbox_id: int, name: str, digest: str) -> int:
        async with self.d.transaction() as s:
            row = AppPassword(mailbox_id=mailbox_id, name=name, digest=digest, created_at=utcnow())
            s.add(row)
            await s.flush()
            return int(row.id)

    async def app_passwords(self, mailbox_id: int) -> list[AppPasswordRow]:
        async with self.d.readers() as s:
            q = select(AppPassword).where(AppPassword.mailbox_id == mailbox_id).order_by(AppPassword.id)
            return [AppPasswordRow(r.id, r.name, r.created_at, r.last_used_at) for r in (await s.execute(q)).scalars()]

    async def delete_app_password(self, mailbox_id: int, app_id: int) -> bool:
        async with self.d.transaction() as s:
            res = await s.execute(delete(AppPassword).where(AppPassword.mailbox_id == mailbox_id,
                                                            AppPassword.id == app_id))
            return bool(getattr(res, "rowcount", 0) == 1)

    async def use_app_password(self, mailbox_id: int, digest: str) -> bool:
        """True (and ``last_used_at`` set) if ``digest`` is one of the mailbox's app passwords."""
        async with self.d.transaction() as s:
            res = await s.execute(update(AppPassword)
                                  .where(AppPassword.mailbox_id == mailbox_id, AppPassword.digest == digest)
                                  .values(last_used_at=utcnow()))
            return bool(getattr(res, "rowcount", 0) == 1)
