"""Paper mail that always arrives (issue 16, item 7), over SMTP and through `esam hybrid`.

A running server takes letters on the submission port; the CLI (``main()`` in process, on
the same config, directory and state) closes batches, records status events and ingests
scans.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import smtplib
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas

from esam_mail.cli import main
from tests.conftest import add_staff
from tests.protocol.harness import Running, client_tls
from tests.protocol.test_hybrid_gateway import GOOD_BODY, letter
from tests.unit.registration.test_cli import FLAGS, OFFICE

pytestmark = pytest.mark.protocol

PASSWORD = "Zhibek-Zholy-77"
CENTRE = "АО «Казпочта», центр возврата, пр. Мәңгілік Ел 55, Астана, Z05T3E2"


class Env:
    def __init__(self, r: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.r, self.capsys, self.monkeypatch = r, capsys, monkeypatch

    def cli(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        rc = main(["-c", self.r.cfg.source, *args])
        out, err = self.capsys.readouterr()
        return rc, out, err

    def json(self, *args: str) -> Any:
        rc, out, err = self.cli(*args, "--json")
        assert rc == 0, err
        return json.loads(out)

    def submit(self, login: str, body: str) -> None:
        with smtplib.SMTP_SSL("127.0.0.1", self.r.ports["submissions"], context=client_tls(), timeout=30) as s:
            s.login(login, PASSWORD)
            msg = letter(body)
            msg.replace_header("From", f"{login}@esam.test")
            s.send_message(msg, from_addr=f"{login}@esam.test", to_addrs=["paper@esam.test"])

    def tracking(self) -> str:
        items = sorted((self.r.cfg.data_dir / "hybrid" / "batches").glob("open/*/items/*.pdf"))
        return items[-1].stem

    def open_batch(self) -> str:
        [b] = self.json("hybrid", "batches", "--state", "open")
        return str(b["batch_id"])

    def inbox(self, login: str) -> list[email.message.EmailMessage]:
        root = self.r.cfg.store_path / login
        files = sorted((root / "new").iterdir()) + sorted((root / "cur").iterdir())
        return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]  # type: ignore[misc]

    def raw_inbox(self, login: str) -> list[bytes]:
        root = self.r.cfg.store_path / login
        return [f.read_bytes() for f in sorted((root / "new").iterdir())]


@pytest.fixture
def env(make_running: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Env:
    r = make_running(registration={"registry_policy": "accept"}, hybrid={"return_centre": CENTRE})
    r.add_mailbox("alice", PASSWORD)  # a service mailbox: no subscriber, no postal address
    e = Env(r, capsys, monkeypatch)
    add_staff(r.cfg.directory_url, "e-17")  # --employee is checked against staff accounts
    add_staff(r.cfg.directory_url, "e-9", role="hybrid")
    rc, _, err = e.cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin=PASSWORD + "\n")
    assert rc == 0, err  # asem: Ахметова Әсем, ул. Абая 12, Қонаев, Алматинская область, B01P3K4
    return e


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(data)).pages)


def item_pdf(env: Env, tracking: str) -> bytes:
    [path] = list((env.r.cfg.data_dir / "hybrid" / "batches").glob(f"*/*/**/{tracking}.pdf"))
    return path.read_bytes()


def test_reprint_after_print_failed_reenters_a_batch(env: Env) -> None:
    env.submit("alice", GOOD_BODY)
    t = env.tracking()
    first = env.open_batch()
    rc, _, err = env.cli("hybrid", "status", t, "PRINTED")
    assert rc == 2 and "no closed print batch" in err and "still open" in err  # not handed over yet
    env.json("hybrid", "batch", "close", first)
    assert env.cli("hybrid", "status", t, "PRINT_FAILED", "--reason", "paper jam")[0] == 0
    reprint = env.json("hybrid", "status", t, "QUEUED_FOR_PRINT")
    second = env.open_batch()
    assert second != first and reprint["note"].startswith(second)
    [item] = (env.r.cfg.data_dir / "hybrid" / "batches" / "open" / second / "items").glob("*.pdf")
    assert item.stem == t and item.read_bytes() == (env.r.cfg.data_dir / "hybrid" / "batches" / "jobs" / first
                                                   / f"{t}.pdf").read_bytes()
    rc, _, err = env.cli("hybrid", "status", t, "PRINTED")
    assert rc == 2 and "still open" in err  # before: accepted although the reprint was in no batch
    job = env.json("hybrid", "batch", "close", second)
    manifest = json.loads(Path(job["manifest_json"]).read_text())
    assert [i["tracking_number"] for i in manifest["items"]] == [t]
    assert env.json("hybrid", "status", t, "PRINTED")["event"] == "PRINTED"


def test_return_address_is_the_senders_postal_address(env: Env) -> None:
    env.submit("asem", GOOD_BODY)
    text = pdf_text(item_pdf(env, env.tracking()))
    for part in ("Ахметова Әсем,", "ул. Абая, 12, Қонаев,", "Алматинская", "область, B01P3K4"):
        assert part in text, (part, text)  # the return line may wrap in the window
    assert "asem@esam.test" not in text


def test_return_address_of_a_service_mailbox_is_the_return_centre(env: Env) -> None:
    env.submit("alice", GOOD_BODY)
    text = pdf_text(item_pdf(env, env.tracking()))
    for part in ("АО «Казпочта», центр возврата, пр. Мәңгілік Ел 55,", "Астана, Z05T3E2"):
        assert part in text, (part, text)


def test_return_reason_reaches_the_senders_status_mail(env: Env) -> None:
    env.submit("asem", GOOD_BODY)
    t = env.tracking()
    env.json("hybrid", "batch", "close", env.open_batch())
    for ev in ("PRINTED", "HANDED_TO_POST"):
        assert env.cli("hybrid", "status", t, ev)[0] == 0
    done = env.json("hybrid", "status", t, "RETURNED", "--reason", "moved")
    assert done["notice_delivered"] is True and done["reason"] == "moved"
    returned = [m for m in env.inbox("asem") if m["X-Esam-Hybrid-Event"] == "RETURNED"]
    assert len(returned) == 1
    body = returned[0].get_content()
    assert "Причина: адресат выбыл" in body and "Себебі: алушы басқа мекенжайға көшкен" in body
    assert "Reason: addressee has moved" in body
    history = env.json("hybrid", "show", t)["events"]
    assert history[-1]["reason"] == "moved"


INTERNATIONAL = """\
To: Hans Müller
Street: Unter den Linden 77
Locality: Berlin
Postcode: {postcode}
Country: Германия
---
Sehr geehrter Herr Müller, ...
"""


def test_international_address_is_accepted_in_upu_form(env: Env) -> None:
    env.submit("asem", INTERNATIONAL.format(postcode="10117"))
    text = pdf_text(item_pdf(env, env.tracking()))
    assert "10117 BERLIN" in text and "GERMANY" in text


def test_international_postcode_is_checked_per_country(env: Env) -> None:
    with pytest.raises(smtplib.SMTPDataError) as info:
        env.submit("asem", INTERNATIONAL.format(postcode="1011"))
    assert info.value.smtp_code == 550 and b"is not a postcode of Germany" in info.value.smtp_error
    with pytest.raises(smtplib.SMTPDataError) as info:
        env.submit("asem", INTERNATIONAL.format(postcode="10117").replace("Германия", "Atlantis"))
    assert b"country" in info.value.smtp_error


def scan(tmp: Path) -> str:
    buf = io.BytesIO()
    c = Canvas(buf)
    c.drawString(72, 72, "scanned")
    c.showPage()
    c.save()
    path = tmp / "scan.pdf"
    path.write_bytes(buf.getvalue())
    return str(path)


def test_scanned_letter_has_its_own_events_and_is_ingested_once(env: Env, tmp_path: Path) -> None:
    args = ["--scan", scan(tmp_path), "--facility", "ALA01", "--employee", "e-9", "--tracking", "RR123456785KZ"]
    done = env.json("hybrid", "ingest", "--to", "850525400017", *args)
    assert done["to"] == "asem@esam.test"
    events = [e["event"] for e in env.json("hybrid", "show", "RR123456785KZ")["events"]]
    assert events == ["SCANNED", "SCAN_DELIVERED"]
    rc, _, err = env.cli("hybrid", "ingest", "--to", "850525400017", *args)
    assert rc == 2 and err.startswith("esam: tracking_number: ") and "already delivered" in err
    assert len([m for m in env.inbox("asem") if m["X-Esam-Tracking"] == "RR123456785KZ"]) == 1
    rc, _, err = env.cli("hybrid", "status", "RR123456785KZ", "SCANNED")
    assert rc == 2 and "ingest" in err
    # the number of an e-mail -> paper item is not a scan's
    env.submit("asem", GOOD_BODY)
    paper = env.tracking()
    rc, _, err = env.cli("hybrid", "ingest", "--to", "850525400017", *args[:-1], paper)
    assert rc == 2 and "tracking_number" in err


def test_sender_name_keeps_its_spaces(env: Env, tmp_path: Path) -> None:
    name = "Алматы қаласының Медеу ауданы әкімдігінің аппараты («Ромашка» бөлімі)"
    env.json("hybrid", "ingest", "--to", "850525400017", "--scan", scan(tmp_path), "--facility", "ALA01",
             "--employee", "e-9", "--sender-name", name)
    [raw] = [b for b in env.raw_inbox("asem") if b"X-Esam-Tracking" in b]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    folded = email.message_from_bytes(raw, policy=email.policy.compat32)["From"]
    # an RFC 2047 reader (mail clients) drops the white space *between* encoded-words
    decoded = str(make_header(decode_header(folded)))
    assert decoded == f"{name} <paper@esam.test>"
