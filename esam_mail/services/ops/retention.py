"""Retention (issue 16, item 5): what the operator keeps, for how long, and ``esam retention run``.

Periods per class, in days (``[retention]``; 0 keeps for ever):

* ``closed_mail_days``: the Maildir of a mailbox closed that long ago is deleted.  The
  mailbox row stays: the login is never issued again (R4);
* ``applications_days``: applications (form data, EDS signature, consent record) and the
  subscriber's form data, once every mailbox of the subscriber is closed that long;
* ``hybrid_days``: closed print jobs (PDFs, manifests), item records and the event logs of
  finished items (delivered, returned, rejected, scan delivered);
* the audit log is kept for ever: the database refuses UPDATE and DELETE on it (R12), and the
  ``retention.purge`` events are the record of what this run removed;
* evidence of the official channel: ``official.evidence_retention_days`` (its own sweep; this
  run purges what is due as well).

Every purge writes one audit event ``retention.purge`` (class, target, what) before the data
goes; ``--dry-run`` lists what would go and changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esam_mail.directory.retention import RetentionTables

__all__ = ["Purge", "Retention"]

FINAL_EVENTS = frozenset({"DELIVERED", "RETURNED", "REJECTED", "SCAN_DELIVERED"})


@dataclass(frozen=True, slots=True)
class Purge:
    """One thing that expired: its class, what it is, and a short detail (counts, paths)."""

    kind: str  # closed_mail | application | hybrid_job | hybrid_item | evidence
    target: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.kind, "target": self.target, **self.detail}


class Retention:
    def __init__(self, cfg: Any, directory: Any, store: Any, official: Any = None) -> None:
        self.cfg = cfg
        self.r = cfg.retention
        self.directory = directory
        self.store = store
        self.tables = RetentionTables(directory)
        self.official = official
        self.hybrid = cfg.data_dir / "hybrid"

    @staticmethod
    def _cutoff(now: dt.datetime, days: int) -> dt.datetime | None:
        return now - dt.timedelta(days=days) if days > 0 else None

    async def plan(self, now: dt.datetime | None = None) -> list[Purge]:
        """Everything that expired by *now* (nothing changes)."""
        now = now or dt.datetime.now(dt.UTC)
        out: list[Purge] = []
        if cut := self._cutoff(now, self.r.closed_mail_days):
            for m in await self.tables.closed_before(cut):
                path = self.store.user(m.login_norm).path
                if await asyncio.to_thread(Path(path).exists):
                    out.append(Purge("closed_mail", m.address, {"mailbox_id": m.id, "path": str(path),
                                                                 "closed_at": m.closed_at.isoformat()}))
        if cut := self._cutoff(now, self.r.applications_days):
            for app_id, sub_id in await self.tables.expired_applications(cut):
                out.append(Purge("application", f"application:{app_id}", {"subscriber_id": sub_id}))
        if cut := self._cutoff(now, self.r.hybrid_days):
            out.extend(await asyncio.to_thread(self._hybrid_expired, cut.timestamp()))
        return out

    def _hybrid_expired(self, cutoff: float) -> list[Purge]:
        out: list[Purge] = []
        jobs = self.hybrid / "batches" / "jobs"
        if jobs.is_dir():
            for job in sorted(jobs.iterdir()):
                manifest = job / "manifest.json"
                try:
                    closed = json.loads(manifest.read_text("utf-8")).get("closed", "")
                    when = dt.datetime.fromisoformat(closed.replace("Z", "+00:00")).timestamp()
                except (OSError, ValueError, AttributeError):
                    when = job.stat().st_mtime
                if when < cutoff:
                    out.append(Purge("hybrid_job", job.name, {"path": str(job)}))
        events = self.hybrid / "events"
        if events.is_dir():
            for log in sorted(events.glob("*/*.jsonl")):
                if log.stat().st_mtime >= cutoff:
                    continue
                lines = [ln for ln in log.read_text("utf-8").splitlines() if ln.strip()]
                last = json.loads(lines[-1]).get("event") if lines else None
                if last in FINAL_EVENTS:
                    item = self.hybrid / "items" / f"{log.stem}.json"
                    out.append(Purge("hybrid_item", log.stem, {"event_log": str(log),
                                                               "item": str(item) if item.exists() else None}))
        return out

    async def run(self, *, dry_run: bool, actor: tuple[str, str]) -> list[Purge]:
        """Purge what expired; one audit event per purge (written before the data goes)."""
        now = dt.datetime.now(dt.UTC)
        todo = await self.plan(now)
        if dry_run:
            return todo
        for p in todo:
            await self.directory.audit(actor[0], actor[1], "retention.purge", p.target, **{"class": p.kind, **p.detail})
            if p.kind == "closed_mail":
                await asyncio.to_thread(shutil.rmtree, p.detail["path"], True)
            elif p.kind == "application":
                await self.tables.purge_application(int(p.target.split(":", 1)[1]), int(p.detail["subscriber_id"]))
            elif p.kind == "hybrid_job":
                await asyncio.to_thread(shutil.rmtree, p.detail["path"], True)
            elif p.kind == "hybrid_item":
                for key in ("event_log", "item"):
                    if p.detail.get(key):
                        await asyncio.to_thread(Path(p.detail[key]).unlink, True)
        if self.official is not None:  # official evidence: its own periods (official.*_retention_days)
            gone = await self.official.tables.purge(now)
            if gone:
                todo.append(Purge("evidence", "official_messages", {"count": gone}))
                await self.directory.audit(actor[0], actor[1], "retention.purge", "official_messages",
                                           **{"class": "evidence", "count": gone})
        return todo
