"""Directory side of the retention policy (``esam retention run``): what expired, and purging it.

Rows of mailboxes are never deleted (a login, once issued, stays reserved, R4); what goes is
the content around them: applications with their signatures and the subscriber's form data
after the mailbox was closed.  The audit log is append-only in the database (R12) and stays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from esam_mail.directory.models import Application, Mailbox, Subscriber
from esam_mail.directory.sql import SqlDirectory

__all__ = ["ClosedMailbox", "RetentionTables"]


@dataclass(frozen=True, slots=True)
class ClosedMailbox:
    id: int
    login_norm: str
    address: str
    subscriber_id: int | None
    closed_at: dt.datetime


class RetentionTables:
    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    async def closed_before(self, cutoff: dt.datetime) -> list[ClosedMailbox]:
        """Mailboxes closed before *cutoff* (their rows stay; the caller purges content)."""
        async with self.d.readers() as s:
            rows = await s.execute(
                select(Mailbox).where(Mailbox.state == "closed", Mailbox.closed_at.is_not(None),
                                      Mailbox.closed_at < cutoff).order_by(Mailbox.id)
            )
            return [ClosedMailbox(m.id, m.login_norm, m.address, m.subscriber_id, m.closed_at)
                    for m in rows.scalars() if m.closed_at is not None]

    async def expired_applications(self, cutoff: dt.datetime) -> list[tuple[int, int]]:
        """(application id, subscriber id) of applications submitted before *cutoff* whose
        subscriber holds no mailbox that is open or was closed after *cutoff*."""
        async with self.d.readers() as s:
            live = select(Mailbox.subscriber_id).where(
                Mailbox.subscriber_id.is_not(None),
                (Mailbox.state != "closed") | (Mailbox.closed_at.is_(None)) | (Mailbox.closed_at >= cutoff),
            )
            rows = await s.execute(
                select(Application.id, Application.subscriber_id).where(
                    Application.submitted_at < cutoff, Application.subscriber_id.is_not(None),
                    Application.subscriber_id.not_in(live),
                ).order_by(Application.id)
            )
            return [(a, sub) for a, sub in rows if sub is not None]

    async def purge_application(self, application_id: int, subscriber_id: int) -> None:
        """Drop the application (form data, signature, consent record) and the subscriber's form
        data; the subscriber row stays, so the mailbox row (the reserved login) keeps its owner kind."""
        async with self.d.transaction() as s:
            await s.execute(delete(Application).where(Application.id == application_id))
            await s.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(data={}))
