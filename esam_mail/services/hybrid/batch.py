"""Print batches per production facility.

Items are routed to a facility by postcode (:class:`FacilityMap`, longest prefix
wins, else the default) and collected in that facility's *open* batch.  Closing a
batch writes the print job folder handed to the facility.

On-disk layout under ``root`` (one fcntl lock, ``root/.lock``, serialises every
change, so several processes may share the store)::

    root/
      .lock
      open/<batch_id>/batch.json               {"batch_id", "facility", "created"}
      open/<batch_id>/items/<S10>.pdf          the item's print file
      open/<batch_id>/items/<S10>.json         its metadata (PrintItem minus the PDF)
      jobs/<batch_id>/<S10>.pdf                closed: one PDF per item
      jobs/<batch_id>/merged.pdf               optional: all items in manifest order
      jobs/<batch_id>/manifest.json            the accountability record
      jobs/<batch_id>/manifest.csv             the same, one row per item (UTF-8)
      tmp/                                     staging for closing

``close`` builds the job in ``tmp/``, fsyncs every file, renames it into ``jobs/``
(atomic: a job folder is complete or absent), fsyncs ``jobs/``, then removes the
open batch.  A crash between the rename and the removal is repaired on the next
call.  Batch ids look like ``ALA-20261126T101500Z-3f9c1a``.
"""

from __future__ import annotations

import builtins
import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pypdf import PdfReader, PdfWriter

from esam_mail.fsio import atomic_write, fsync_dir, write_file
from esam_mail.services.hybrid._fs import FILE_MODE, locked
from esam_mail.services.hybrid.address import PostalAddress, normalize_postcode
from esam_mail.services.hybrid.errors import M_, HybridInputError, HybridStateError
from esam_mail.services.hybrid.s10 import validate_s10

__all__ = ["MANIFEST_CSV_COLUMNS", "BatchInfo", "BatchStore", "FacilityMap", "PrintItem"]

MANIFEST_CSV_COLUMNS = (
    "seq", "tracking_number", "recipient_name", "recipient_address", "postcode",
    "pages", "sheets", "duplex", "sha256", "sender", "file",
)
_FACILITY_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_BATCH_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}-\d{8}T\d{6}Z-[0-9a-f]{6}")


@dataclass(frozen=True, slots=True)
class FacilityMap:
    """Postcode prefix -> production facility code, with a default facility.

    Example: ``FacilityMap({"05": "ALA", "A": "ALA", "01": "AST", "Z": "AST"}, default="ALA")``
    (legacy 6-digit codes and the 7-character codes both route by prefix).
    """

    routes: Mapping[str, str]
    default: str

    def __post_init__(self) -> None:
        for code in (self.default, *self.routes.values()):
            if not _FACILITY_RE.fullmatch(code):
                raise HybridInputError("facility", M_("bad facility code '{code}' (A-Z, 0-9, _ -)", code=code))

    def facility_for(self, postcode: str) -> str:
        """The facility for ``postcode`` (longest matching prefix, else the default)."""
        pc = normalize_postcode(postcode)
        best = ""
        for prefix in self.routes:
            p = normalize_postcode(prefix)
            if pc.startswith(p) and len(p) > len(best):
                best = p
        return self.routes[best] if best else self.default


@dataclass(frozen=True, slots=True)
class PrintItem:
    """One rendered item to print (see :func:`render.render_letter`)."""

    tracking_number: str
    sender: str  # the sender's e-mail address (accountability)
    address: PostalAddress
    pdf: bytes
    pages: int
    sheets: int
    sha256: str
    duplex: bool = False
    options: Mapping[str, str] = field(default_factory=dict)  # colour, envelope, registered...

    def meta(self) -> dict[str, Any]:
        """JSON-serialisable metadata (everything but the PDF bytes)."""
        return {
            "tracking_number": self.tracking_number, "sender": self.sender,
            "address": self.address.to_dict(), "pages": self.pages, "sheets": self.sheets,
            "sha256": self.sha256, "duplex": self.duplex, "options": dict(self.options),
        }


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch as listed by :meth:`BatchStore.list`."""

    batch_id: str
    facility: str
    state: Literal["open", "closed"]
    created: str
    items: int
    path: Path
    closed: str | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BatchStore:
    """Open and closed print batches under ``root`` (multi-process safe).

    Args:
        root: the store directory (created if missing).
        facilities: postcode routing.
        merged_pdf: also write ``merged.pdf`` with every item of a closed batch.
    """

    def __init__(self, root: Path, facilities: FacilityMap, *, merged_pdf: bool = False) -> None:
        self.root = Path(root)
        self.facilities = facilities
        self.merged_pdf = merged_pdf
        self._open = self.root / "open"
        self._jobs = self.root / "jobs"
        self._tmp = self.root / "tmp"
        for d in (self._open, self._jobs, self._tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = self.root / ".lock"

    # -- internals (call with the lock held) ------------------------------------------
    def _recover(self) -> None:
        for d in self._open.iterdir():
            if (self._jobs / d.name).exists():  # closed, but the open copy survived a crash
                shutil.rmtree(d)
        for d in self._tmp.iterdir():  # half-built jobs of a crashed close
            shutil.rmtree(d, ignore_errors=True)

    def _open_batch_for(self, facility: str) -> Path | None:
        for d in sorted(self._open.iterdir()):
            meta = self._read_json(d / "batch.json")
            if meta.get("facility") == facility:
                return d
        return None

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise HybridStateError(f"batch store: cannot read {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise HybridStateError(f"batch store: {path} is not a JSON object")
        return data

    def _tracking_known(self, tracking: str) -> bool:
        return any((d / "items" / f"{tracking}.json").exists() for d in self._open.iterdir())

    # -- public API ---------------------------------------------------------------------
    def add(self, item: PrintItem) -> str:
        """Add ``item`` to its facility's open batch (opening one if needed).

        Returns:
            the batch id.

        Raises:
            HybridInputError: bad tracking number or the item is already in an open batch.
        """
        tracking = validate_s10(item.tracking_number)
        facility = self.facilities.facility_for(item.address.postcode)
        with locked(self._lock):
            self._recover()
            if self._tracking_known(tracking):
                raise HybridInputError("tracking_number", M_("{tracking} is already in a batch", tracking=tracking))
            bdir = self._open_batch_for(facility)
            if bdir is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                batch_id = f"{facility}-{stamp}-{secrets.token_hex(3)}"
                bdir = self._open / batch_id
                (bdir / "items").mkdir(parents=True)
                atomic_write(bdir / "batch.json", json.dumps(
                    {"batch_id": batch_id, "facility": facility, "created": _now()}
                ).encode(), mode=FILE_MODE)
                fsync_dir(self._open)
            items = bdir / "items"
            atomic_write(items / f"{tracking}.pdf", item.pdf, mode=FILE_MODE)
            meta = {**item.meta(), "tracking_number": tracking, "added": _now(), "facility": facility}
            # The .json is written last: an item exists once its metadata exists.
            atomic_write(items / f"{tracking}.json", json.dumps(meta, ensure_ascii=False).encode(), mode=FILE_MODE)
            return bdir.name

    def location(self, batch_id: str, tracking: str) -> Literal["open", "closed"] | None:
        """Where ``tracking`` is in ``batch_id``: its open batch, its closed job, or not there."""
        if not _BATCH_ID_RE.fullmatch(batch_id or ""):
            return None
        tracking = validate_s10(tracking)
        with locked(self._lock):
            self._recover()
            if (self._open / batch_id / "items" / f"{tracking}.json").exists():
                return "open"
            if (self._jobs / batch_id / f"{tracking}.pdf").exists():
                return "closed"
        return None

    def item_pdf(self, batch_id: str, tracking: str) -> bytes:
        """The print file of ``tracking`` in ``batch_id`` (open or closed)."""
        tracking = validate_s10(tracking)
        for path in (self._open / batch_id / "items" / f"{tracking}.pdf", self._jobs / batch_id / f"{tracking}.pdf"):
            try:
                return path.read_bytes()
            except FileNotFoundError:
                continue
        raise HybridStateError(f"no print file of {tracking} in batch {batch_id}")

    def open_batch(self, facility: str) -> str | None:
        """The id of ``facility``'s open batch, if any."""
        with locked(self._lock):
            d = self._open_batch_for(facility)
        return d.name if d else None

    def close(self, batch_id: str) -> Path:
        """Close an open batch and write its job folder; returns the folder path.

        Raises:
            HybridInputError: no such open batch.
        """
        if not _BATCH_ID_RE.fullmatch(batch_id):
            raise HybridInputError("batch_id", M_("malformed batch id '{batch_id}'", batch_id=batch_id))
        with locked(self._lock):
            self._recover()
            src = self._open / batch_id
            if not src.is_dir():
                raise HybridInputError("batch_id", M_("no open batch {batch_id}", batch_id=batch_id))
            meta = self._read_json(src / "batch.json")
            items = sorted(
                (self._read_json(p) for p in (src / "items").glob("*.json")),
                key=lambda m: (m.get("added", ""), m["tracking_number"]),
            )
            stage = self._tmp / f"{batch_id}.{secrets.token_hex(4)}"
            stage.mkdir()
            self._write_job(stage, src / "items", meta, items)
            fsync_dir(stage)
            dest = self._jobs / batch_id
            os.rename(stage, dest)
            fsync_dir(self._jobs)
            shutil.rmtree(src)
            fsync_dir(self._open)
            return dest

    def _write_job(
        self, stage: Path, items_dir: Path, meta: dict[str, Any], items: list[dict[str, Any]]
    ) -> None:
        rows: list[dict[str, Any]] = []
        merged = PdfWriter() if self.merged_pdf else None
        ranges = []
        page = 1
        for seq, it in enumerate(items, start=1):
            tn = it["tracking_number"]
            data = (items_dir / f"{tn}.pdf").read_bytes()
            write_file(stage / f"{tn}.pdf", data, mode=FILE_MODE)
            addr = PostalAddress(**it["address"])
            rows.append({
                "seq": seq, "tracking_number": tn, "recipient_name": addr.name,
                "recipient_address": addr.one_line(), "address_lines": addr.lines(),
                "postcode": addr.postcode, "pages": it["pages"], "sheets": it["sheets"],
                "duplex": it.get("duplex", False), "options": it.get("options", {}),
                "sha256": it["sha256"], "sender": it["sender"], "file": f"{tn}.pdf",
            })
            if merged is not None:
                merged.append(PdfReader(io.BytesIO(data)))
                ranges.append({"tracking_number": tn, "first_page": page,
                               "last_page": page + it["pages"] - 1})
                page += it["pages"]
        manifest: dict[str, Any] = {
            "batch_id": meta["batch_id"], "facility": meta["facility"],
            "created": meta["created"], "closed": _now(), "item_count": len(rows),
            "page_count": sum(r["pages"] for r in rows),
            "sheet_count": sum(r["sheets"] for r in rows), "items": rows,
        }
        if merged is not None:
            buf = io.BytesIO()
            merged.write(buf)
            write_file(stage / "merged.pdf", buf.getvalue(), mode=FILE_MODE)
            manifest["merged"] = {"file": "merged.pdf", "ranges": ranges,
                                  "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
        write_file(
            stage / "manifest.json",
            json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"),
            mode=FILE_MODE,
        )
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=MANIFEST_CSV_COLUMNS, extrasaction="ignore",
                           lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
        write_file(stage / "manifest.csv", out.getvalue().encode("utf-8"), mode=FILE_MODE)

    def list(self, *, state: Literal["open", "closed"] | None = None) -> list[BatchInfo]:
        """Open and/or closed batches, oldest first."""
        out: list[BatchInfo] = []
        with locked(self._lock):
            self._recover()
            if state in (None, "open"):
                for d in self._open.iterdir():
                    m = self._read_json(d / "batch.json")
                    n = sum(1 for _ in (d / "items").glob("*.json"))
                    out.append(BatchInfo(d.name, m["facility"], "open", m["created"], n, d))
            if state in (None, "closed"):
                for d in self._jobs.iterdir():
                    m = self._read_json(d / "manifest.json")
                    out.append(BatchInfo(d.name, m["facility"], "closed", m["created"],
                                         m["item_count"], d, m["closed"]))
        return sorted(out, key=lambda b: (b.created, b.batch_id))

    def close_all(self, facilities: Iterable[str] | None = None) -> builtins.list[Path]:
        """Close every open batch (of the given facilities); for a cut-off job."""
        wanted = set(facilities) if facilities is not None else None
        return [
            self.close(b.batch_id) for b in self.list(state="open")
            if wanted is None or b.facility in wanted
        ]
