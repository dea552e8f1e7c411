"""Aliases: local addresses that are not mailboxes (``postmaster@``, ``abuse@`` ...).

``name@<domain>`` delivers to each target: a local login or a full remote address.
Tables ``aliases`` and ``alias_targets`` (models :class:`~esam_mail.directory.models.Alias`
and :class:`~esam_mail.directory.models.AliasTarget`).

Names are shared with logins and never change hands (R4):

* an alias can never take a name that was ever issued as a login (closed mailboxes
  included), and ``SqlDirectory.add_mailbox`` refuses a login that is, or ever was, an
  alias: removing an alias keeps its row (``removed_at``), so the name stays out of
  registration;
* both writers hold :func:`~esam_mail.directory.sql.lock_local_name` while they check
  the other table, so the rule also holds for concurrent writers on PostgreSQL.

Targets are checked when added: a local target must be an open mailbox (an alias
pointing at an alias is refused: one level, no loops); a remote target must be a
syntactically valid address.  Every change is in the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from esam_mail.directory.models import Alias, AliasTarget, AuditEvent, Mailbox, utcnow
from esam_mail.directory.sql import SqlDirectory, lock_local_name, normalize_address, normalize_login
from esam_mail.errors import NotFound, ValidationError
from esam_mail.i18n import domain_message

M_ = domain_message("identity")

__all__ = ["DEFAULT_ROLE_ALIASES", "AliasDirectory", "AliasRecord"]

#: RFC 5321 4.5.1 (postmaster, required), RFC 2142 (abuse, hostmaster).
DEFAULT_ROLE_ALIASES = ("postmaster", "abuse", "hostmaster")

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_REMOTE = re.compile(r"^[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")


@dataclass(frozen=True, slots=True)
class AliasRecord:
    name: str
    address: str
    targets: tuple[str, ...]


class AliasDirectory:
    """Alias reads and writes over the directory's database."""

    def __init__(self, directory: SqlDirectory) -> None:
        self.directory = directory
        self.domain = directory.domain

    # -- reads --------------------------------------------------------------------------
    async def resolve(self, name: str) -> tuple[str, ...] | None:
        """Targets of the live alias ``name`` (a local part), or None if there is none."""
        norm = normalize_login(name)
        async with self.directory.readers() as s:
            row = (await s.execute(
                select(Alias.id).where(Alias.name_norm == norm, Alias.removed_at.is_(None))
            )).first()
            if row is None:
                return None
            targets = (await s.execute(
                select(AliasTarget.target).where(AliasTarget.alias_id == row[0]).order_by(AliasTarget.id)
            )).scalars()
            return tuple(targets)

    async def list_all(self) -> list[AliasRecord]:
        async with self.directory.readers() as s:
            aliases = (await s.execute(
                select(Alias).where(Alias.removed_at.is_(None)).order_by(Alias.name_norm)
            )).scalars().all()
            rows = (await s.execute(select(AliasTarget).order_by(AliasTarget.id))).scalars().all()
        by_alias: dict[int, list[str]] = {}
        for t in rows:
            by_alias.setdefault(t.alias_id, []).append(t.target)
        return [AliasRecord(a.name, f"{a.name}@{self.domain}", tuple(by_alias.get(a.id, ()))) for a in aliases]

    # -- writes -------------------------------------------------------------------------
    def _name(self, name: str) -> str:
        raw = name.strip()
        if "@" in raw:
            local, _, domain = raw.rpartition("@")
            if domain.lower() != self.domain:
                raise ValidationError("name", M_("an alias is a local part of {domain}, not '{name}'", domain=self.domain, name=raw))
            raw = local
        norm = normalize_login(raw)
        if not _NAME.match(norm):
            raise ValidationError("name", M_("use 1-64 of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit"))
        return norm

    async def _target(self, s: AsyncSession, target: str) -> str:
        """Normalize one target; local ones must be open mailboxes."""
        raw = target.strip()
        local, at, domain = raw.rpartition("@")
        if at and domain.lower() != self.domain:
            if not _REMOTE.match(raw):
                raise ValidationError("target", M_("'{target}' is not an e-mail address", target=raw))
            return normalize_address(raw)
        login = normalize_login(local if at else raw)
        m = (await s.execute(select(Mailbox).where(Mailbox.login_norm == login))).scalar_one_or_none()
        if m is None:
            alias = (await s.execute(select(Alias.id).where(Alias.name_norm == login))).first()
            if alias is not None:
                raise ValidationError("target", M_("'{target}' is an alias; point at mailboxes (one level, no loops)", target=raw))
            raise ValidationError("target", M_("no mailbox '{target}'", target=raw))
        if m.state == "closed":
            raise ValidationError("target", M_("mailbox '{target}' is closed", target=raw))
        return m.login_norm

    async def add(self, name: str, targets: list[str], *, actor: tuple[str, str] = ("sysadmin", "cli")) -> AliasRecord:
        """Create the alias, or add targets to it (re-creating a removed one)."""
        norm = self._name(name)
        if not targets:
            raise ValidationError("target", M_("give at least one target mailbox or address"))
        async with self.directory.transaction() as s:
            await lock_local_name(s, norm)
            if (await s.execute(select(Mailbox.id).where(Mailbox.login_norm == norm))).first() is not None:
                raise ValidationError("name", M_("'{name}' is a login (issued once, never reused): not available as an alias", name=norm))
            clean = []
            for t in targets:
                value = await self._target(s, t)
                if value not in clean:
                    clean.append(value)
            alias = (await s.execute(select(Alias).where(Alias.name_norm == norm))).scalar_one_or_none()
            if alias is None:
                shown = name.strip().rpartition("@")[0] if "@" in name else name.strip()
                alias = Alias(name=shown, name_norm=norm)
                s.add(alias)
                await s.flush()
            elif alias.removed_at is not None:
                alias.removed_at = None
            have = set((await s.execute(
                select(AliasTarget.target).where(AliasTarget.alias_id == alias.id)
            )).scalars())
            for value in clean:
                if value not in have:
                    s.add(AliasTarget(alias_id=alias.id, target=value))
            s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1], action="alias.add",
                             target=f"{norm}@{self.domain}", outcome="ok", detail={"targets": clean}))
            await s.flush()
            final = tuple((await s.execute(
                select(AliasTarget.target).where(AliasTarget.alias_id == alias.id).order_by(AliasTarget.id)
            )).scalars())
        return AliasRecord(alias.name, f"{alias.name}@{self.domain}", final)

    async def remove(self, name: str, targets: list[str] | None = None,
                     *, actor: tuple[str, str] = ("sysadmin", "cli")) -> AliasRecord | None:
        """Remove some targets, or the whole alias (its name stays out of registration).

        Returns the alias as it is afterwards (None once removed as a whole)."""
        norm = self._name(name)
        async with self.directory.transaction() as s:
            alias = (await s.execute(
                select(Alias).where(Alias.name_norm == norm, Alias.removed_at.is_(None))
            )).scalar_one_or_none()
            if alias is None:
                raise NotFound(f"no alias {norm}@{self.domain}")
            if targets:
                drop = []
                for t in targets:
                    local, at, domain = t.strip().rpartition("@")
                    drop.append(normalize_address(t) if at and domain.lower() != self.domain
                                else normalize_login(local if at else t))
                await s.execute(delete(AliasTarget).where(AliasTarget.alias_id == alias.id,
                                                          AliasTarget.target.in_(drop)))
                left = tuple((await s.execute(
                    select(AliasTarget.target).where(AliasTarget.alias_id == alias.id).order_by(AliasTarget.id)
                )).scalars())
                if left:
                    s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1], action="alias.remove_target",
                                     target=f"{norm}@{self.domain}", outcome="ok", detail={"targets": drop}))
                    return AliasRecord(alias.name, f"{alias.name}@{self.domain}", left)
            await s.execute(delete(AliasTarget).where(AliasTarget.alias_id == alias.id))
            alias.removed_at = utcnow()
            s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1], action="alias.remove",
                             target=f"{norm}@{self.domain}", outcome="ok", detail={}))
        return None
