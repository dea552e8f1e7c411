"""Hybrid mail end to end: `esam serve` as a subprocess, swaks, the `esam hybrid` CLI, IMAPS.

E-mail -> paper: swaks submits (AUTH PLAIN over STARTTLS) a Kazakh/Russian letter with
a PDF attached to paper@esam.test -> `esam hybrid batches` lists it -> `esam hybrid batch
close` writes manifest.json/csv whose SHA-256 match the PDFs -> `esam hybrid status`
records PRINTED, HANDED_TO_POST, DELIVERED -> the status e-mails are in the sender's INBOX
over IMAP.  Paper -> e-mail: `esam hybrid ingest` -> the scan is in the INBOX over IMAP,
byte-identical; a non-PDF and unknown or closed mailboxes exit 2 and deliver nothing.
"""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import imaplib
import io
import json
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas

from esam_mail.services.hybrid import is_valid_s10
from tests.e2e.conftest import EsamProcess, tool
from tests.e2e.test_spine import imaps

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-Passw0rd"

BODY = """\
Кому: Серікбаев Асқар Нұрланұлы
Улица: ул. Абая
Дом: 12А
Кв.: 5
Населённый пункт: Алматы
Индекс: A01P3K4
---
Құрметті Асқар Нұрланұлы! Қағаз хат жіберемін.
Уважаемый Аскар Нурланович, направляю вам счёт.
"""


def make_pdf(text: str, pages: int = 1) -> bytes:
    buf = io.BytesIO()
    c = Canvas(buf)
    for i in range(pages):
        c.drawString(72, 72, f"{text} {i + 1}")
        c.showPage()
    c.save()
    return buf.getvalue()


def swaks_submit(esam: EsamProcess, eml: Path, *, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['submission']}", "--tls",
         "--auth", "PLAIN", "--auth-user", user, "--auth-password", PASSWORD,
         "--from", f"{user}@esam.test", "--to", "paper@esam.test", "--helo", "client.test",
         "--data", f"@{eml}"],
        capture_output=True, text=True, timeout=60,
    )


def inbox(m: imaplib.IMAP4_SSL) -> list[EmailMessage]:
    m.select("INBOX")
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK"
    out = []
    for uid in data[0].split():
        typ, parts = m.uid("FETCH", uid, "(BODY.PEEK[])")
        assert typ == "OK"
        msg = email.message_from_bytes(parts[0][1], policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def esam_json(esam: EsamProcess, *args: str) -> object:
    return json.loads(esam.esam(*args, "--json").stdout)


def mailbox_ref(esam: EsamProcess, login: str) -> str:
    """``#ID`` of a mailbox: how staff address a paper letter to a mailbox without an IIN/BIN."""
    shown = esam_json(esam, "mailbox", "show", login)
    assert isinstance(shown, dict)
    return f"#{shown['id']}"


def test_email_to_paper_batch_manifest_status_mails(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_mailbox("alice", PASSWORD)
    attachment = make_pdf("attached invoice", pages=2)
    msg = EmailMessage()
    msg["From"] = "Alice <alice@esam.test>"
    msg["To"] = "paper@esam.test"
    msg["Subject"] = "Гибридное письмо"
    msg["Message-ID"] = "<e2e-hybrid-1@esam.test>"
    msg.set_content(BODY)
    msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    eml = tmp_path / "letter.eml"
    eml.write_bytes(msg.as_bytes(policy=email.policy.SMTP).rstrip(b"\r\n"))
    res = swaks_submit(esam, eml)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "250 2.0.0" in res.stdout

    batches = esam_json(esam, "hybrid", "batches")
    assert isinstance(batches, list) and len(batches) == 1
    batch = batches[0]
    assert batch["state"] == "open" and batch["items"] == 1 and batch["facility"] == "ALA01"
    human = esam.esam("hybrid", "batches").stdout
    assert batch["batch_id"] in human

    closed = esam_json(esam, "hybrid", "batch", "close", batch["batch_id"])
    assert isinstance(closed, dict)
    job = Path(closed["path"])
    manifest = json.loads((job / "manifest.json").read_text("utf-8"))
    assert manifest["item_count"] == 1
    [item] = manifest["items"]
    tracking = item["tracking_number"]
    assert is_valid_s10(tracking) and tracking.startswith("RR") and tracking.endswith("KZ")
    pdf = (job / item["file"]).read_bytes()
    assert hashlib.sha256(pdf).hexdigest() == item["sha256"]
    with (job / "manifest.csv").open(encoding="utf-8", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["tracking_number"] == tracking and row["sha256"] == item["sha256"]
    assert row["recipient_name"] == "Серікбаев Асқар Нұрланұлы"
    assert item["pages"] == 3  # one page of letter + two attached
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Асқар" in text and "направляю" in text and tracking in text
    assert "attached invoice 2" in text
    assert esam_json(esam, "hybrid", "batches", "--state", "open") == []
    # closing twice: the batch is no longer open
    again = esam.esam("hybrid", "batch", "close", batch["batch_id"], check=False)
    assert again.returncode == 2 and "batch_id" in again.stderr

    for ev in ("PRINTED", "HANDED_TO_POST", "DELIVERED"):
        out = esam.esam("hybrid", "status", tracking, ev, "--actor", "employee:77", "--note", "e2e").stdout
        assert ev in out
    bad = esam.esam("hybrid", "status", tracking, "PRINTED", check=False)
    assert bad.returncode == 2 and "event" in bad.stderr  # DELIVERED is final
    unknown = esam.esam("hybrid", "status", "RR123456785KZ", "PRINTED", check=False)
    assert unknown.returncode == 3

    history = esam_json(esam, "hybrid", "show", tracking)
    assert isinstance(history, dict)
    assert [e["event"] for e in history["events"]] == [
        "ACCEPTED", "QUEUED_FOR_PRINT", "PRINTED", "HANDED_TO_POST", "DELIVERED"]
    assert history["events"][2]["actor"] == "employee:77/os=root"  # root may name the actor

    m = imaps(esam, "alice", PASSWORD)
    mails = inbox(m)
    m.logout()
    events = [x["X-Esam-Hybrid-Event"] for x in mails]
    assert events == ["ACCEPTED", "PRINTED", "DELIVERED"]
    for x in mails:
        assert x["X-Esam-Tracking"] == tracking
        assert tracking in x["Subject"]
        assert "paper@esam.test" in x["From"]
    assert f"Трек-номер: {tracking}" in mails[0].get_content()


def test_invalid_letter_is_refused_with_a_fix_it_mail(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_mailbox("alice", PASSWORD)
    eml = tmp_path / "bad.eml"
    eml.write_bytes(
        b"From: alice@esam.test\r\nTo: paper@esam.test\r\nSubject: no address\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Просто текст без адреса.".encode()
    )
    res = swaks_submit(esam, eml)
    assert "550 5.6.0" in res.stdout, res.stdout
    assert esam_json(esam, "hybrid", "batches") == []
    m = imaps(esam, "alice", PASSWORD)
    [fix] = inbox(m)
    m.logout()
    assert fix["X-Esam-Hybrid-Event"] == "REJECTED"
    assert "is not an address line" in fix.get_content()  # what to fix, per line


def test_ingest_scan_is_delivered_byte_identical_and_audited(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_mailbox("alice", PASSWORD)
    esam.add_staff("1234", "hybrid", None)
    scan = make_pdf("scanned paper letter", pages=2)
    f = tmp_path / "scan.pdf"
    f.write_bytes(scan)
    alice = esam_json(esam, "mailbox", "show", "alice")
    assert isinstance(alice, dict)
    out = esam_json(esam, "hybrid", "ingest", "--to", f"#{alice['id']}", "--scan", str(f),
                    "--facility", "ALA01", "--employee", "1234", "--sender-name", "ТОО «Ромашка»",
                    "--tracking", "RR123456785KZ")
    assert isinstance(out, dict) and out["tracking_number"] == "RR123456785KZ" and out["pages"] == 2

    m = imaps(esam, "alice", PASSWORD)
    [msg] = inbox(m)
    m.logout()
    assert "RR123456785KZ" in msg["Subject"]
    assert "Ромашка" in str(msg["From"])
    [att] = list(msg.iter_attachments())
    assert att.get_content_type() == "application/pdf"
    assert att.get_content() == scan  # byte-identical
    assert str(msg["X-Esam-Scan-SHA256"]).strip() == hashlib.sha256(scan).hexdigest()

    audit = esam_json(esam, "audit", "list", "--action", "hybrid.ingest")
    assert isinstance(audit, list) and len(audit) == 1
    assert audit[0]["actor"] == "employee:1234" and audit[0]["outcome"] == "ok"
    assert audit[0]["detail"]["sha256"] == hashlib.sha256(scan).hexdigest()


def test_ingest_refuses_bad_scans_and_mailboxes(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_staff("1234", "hybrid", None)
    esam.add_mailbox("alice", PASSWORD)
    esam.add_mailbox("carol", PASSWORD)
    esam.esam("mailbox", "close", "carol")
    good = tmp_path / "good.pdf"
    good.write_bytes(make_pdf("scan"))
    text = tmp_path / "letter.txt"
    text.write_text("not a pdf at all\n")
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)

    def ingest(to: str, scan: Path) -> subprocess.CompletedProcess[str]:
        return esam.esam("hybrid", "ingest", "--to", to, "--scan", str(scan), "--facility", "ALA01",
                         "--employee", "1234", check=False)

    alice, carol = (mailbox_ref(esam, who) for who in ("alice", "carol"))
    for to, scan, field in (
        (alice, text, "scan"),
        (alice, corrupt, "scan"),
        (alice, tmp_path / "missing.pdf", "scan"),
        ("#999", good, "to"),
        (carol, good, "to"),
        ("alice@esam.test", good, "to"),  # never by login or address
        ("alice", good, "to"),
    ):
        res = ingest(to, scan)
        assert res.returncode == 2, (to, scan, res.stdout, res.stderr)
        assert res.stderr.startswith(f"esam: {field}: "), res.stderr
    bad_tracking = esam.esam("hybrid", "ingest", "--to", alice, "--scan", str(good),
                             "--facility", "ALA01", "--employee", "1234", "--tracking", "RR123456786KZ",
                             check=False)
    assert bad_tracking.returncode == 2 and "tracking_number" in bad_tracking.stderr
    m = imaps(esam, "alice", PASSWORD)
    assert inbox(m) == []
    m.logout()
    refused = esam_json(esam, "audit", "list", "--action", "hybrid.ingest")
    assert isinstance(refused, list) and refused and all(r["outcome"] == "refused" for r in refused)
