"""Batches per facility: routing, close writes a consistent job folder, multi-process add."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
from pathlib import Path

import pytest
from pypdf import PdfReader

from esam_mail.services.hybrid.address import PostalAddress
from esam_mail.services.hybrid.batch import BatchStore, FacilityMap, PrintItem
from esam_mail.services.hybrid.errors import HybridInputError
from esam_mail.services.hybrid.s10 import format_s10

from .conftest import make_pdf

FAC = FacilityMap({"05": "ALA", "A": "ALA", "01": "AST", "Z": "AST", "Z05": "AST2"}, default="MAIN")


def _item(serial: int, postcode: str, pages: int = 1) -> PrintItem:
    pdf = make_pdf(pages)
    addr = PostalAddress(name=f"Алушы {serial}", street="ул. Абая", house=str(serial),
                         locality="Алматы", postcode=postcode)
    return PrintItem(tracking_number=format_s10("RR", serial), sender=f"u{serial}@pochta.kz",
                     address=addr, pdf=pdf, pages=pages, sheets=pages,
                     sha256=hashlib.sha256(pdf).hexdigest())


def test_facility_routing() -> None:
    assert FAC.facility_for("050012") == "ALA"
    assert FAC.facility_for("a01p3k4") == "ALA"
    assert FAC.facility_for("Z05T3E0") == "AST2"  # longest prefix wins
    assert FAC.facility_for("Z01P3K4") == "AST"
    assert FAC.facility_for("100000") == "MAIN"
    with pytest.raises(HybridInputError):
        FacilityMap({"05": "../x"}, default="MAIN")


def test_close_writes_consistent_manifest(tmp_path: Path) -> None:
    store = BatchStore(tmp_path, FAC, merged_pdf=True)
    b1 = store.add(_item(1, "050012", pages=2))
    assert store.add(_item(2, "A01P3K4")) == b1
    b2 = store.add(_item(3, "100000"))
    assert b2 != b1 and b2.startswith("MAIN-")
    with pytest.raises(HybridInputError, match="already"):
        store.add(_item(1, "050012"))
    assert sorted((b.facility, b.items, b.state) for b in store.list()) == [
        ("ALA", 2, "open"), ("MAIN", 1, "open")]

    job = store.close(b1)
    assert job == tmp_path / "jobs" / b1
    m = json.loads((job / "manifest.json").read_text("utf-8"))
    assert m["facility"] == "ALA" and m["item_count"] == 2
    assert m["page_count"] == 3 and m["sheet_count"] == 3
    for it in m["items"]:
        data = (job / it["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == it["sha256"]
        assert len(PdfReader(io.BytesIO(data)).pages) == it["pages"]
    merged = (job / "merged.pdf").read_bytes()
    assert hashlib.sha256(merged).hexdigest() == m["merged"]["sha256"]
    assert len(PdfReader(io.BytesIO(merged)).pages) == 3
    assert m["merged"]["ranges"][1]["first_page"] == 3

    rows = list(csv.DictReader(io.StringIO((job / "manifest.csv").read_text("utf-8"))))
    assert [r["tracking_number"] for r in rows] == [i["tracking_number"] for i in m["items"]]
    assert rows[0]["recipient_name"] == "Алушы 1" and rows[0]["postcode"] == "050012"
    assert rows[0]["sha256"] == m["items"][0]["sha256"] and rows[0]["sender"] == "u1@pochta.kz"
    assert "050012" in rows[0]["recipient_address"]

    assert not (tmp_path / "open" / b1).exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    states = {b.batch_id: b.state for b in store.list()}
    assert states == {b1: "closed", b2: "open"}
    with pytest.raises(HybridInputError):
        store.close(b1)
    # After closing, the next ALA item opens a new batch.
    assert store.add(_item(4, "050000")) not in (b1, b2)


def test_recovers_after_crash_between_rename_and_cleanup(tmp_path: Path) -> None:
    store = BatchStore(tmp_path, FAC)
    b = store.add(_item(1, "050012"))
    job = store.close(b)
    # Simulate: the open copy survived (crash before rmtree) and a half-built stage.
    (tmp_path / "open" / b / "items").mkdir(parents=True)
    (tmp_path / "tmp" / "junk").mkdir()
    assert [x.batch_id for x in store.list()] == [b]
    assert job.exists() and not (tmp_path / "tmp" / "junk").exists()


def _adder(root: str, start: int) -> None:
    store = BatchStore(Path(root), FAC)
    for s in range(start, start + 5):
        store.add(_item(s, "050012"))


def test_multi_process_adds_share_one_open_batch(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_adder, args=(str(tmp_path), 10 * i)) for i in range(1, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0
    batches = BatchStore(tmp_path, FAC).list()
    assert [(b.facility, b.items) for b in batches] == [("ALA", 15)]
