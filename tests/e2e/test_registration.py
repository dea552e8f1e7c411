"""Registration end to end (rules, paragraphs 5-7, 11, 13): `esam register`, then real clients.

Para. 7: "the national mail operator creates an electronic subscriber mailbox from
the moment the user submits the application", so within the same second after
`esam register individual` returns, swaks delivers to the new address over
SMTP and imaplib reads it over IMAPS with the chosen password.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.conftest import EsamProcess, tool
from tests.e2e.test_spine import body_of, fetch_bodies, imaps

pytestmark = pytest.mark.e2e

PASSWORD = "Qazaq-Pochta-2026"

FORM = [
    "--surname", "Ахметова", "--given-name", "Әсем", "--patronymic", "Серікқызы",
    "--iin", "850525400017", "--birth-date", "1985-05-25",
    "--doc-type", "id_card", "--doc-number", "041234567", "--doc-issuer", "МВД РК",
    "--doc-issue-date", "2018-03-01",
    "--region", "Алматинская область", "--locality", "Қонаев", "--street", "ул. Абая",
    "--house", "12/3", "--apartment", "45", "--postcode", "B01P3K4",
    "--home-phone", "8 (727) 250-00-00", "--mobile-phone", "8 (701) 123-45-67",
    "--office", "ALA01", "--employee", "e-17", "--accept-agreement", "2026-1",
]  # fmt: skip


def register(esam: EsamProcess, username: str, *extra: str, check: bool = True) -> Any:
    return esam.esam(
        "register", "individual", *FORM, "--username", username, "--password-stdin", *extra,
        input=PASSWORD + "\n", check=check,
    )  # fmt: skip


def swaks(esam: EsamProcess, to: str, body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['smtp']}", "--from", "bob@other.test",
         "--to", to, "--helo", "peer.other.test", "--header", "Subject: welcome",
         "--header", "Content-Type: text/plain; charset=utf-8", "--body", body],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def notices_and_mail(bodies: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """The system's own notices to the subscriber (welcome ...) apart from other mail."""
    notices = [b for b in bodies if b"\r\nReceived: from notices " in b"\r\n" + b]
    return notices, [b for b in bodies if b not in notices]


def counts(esam: EsamProcess) -> tuple[int, int, int]:
    """Subscribers, applications and personal mailboxes (``esam init`` makes a service
    mailbox for the operator, which postmaster, abuse and hostmaster point at)."""
    db = sqlite3.connect(esam.data / "directory.db")
    try:
        return tuple(  # type: ignore[return-value]
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("subscribers", "applications", "mailboxes WHERE kind = 'personal'")
        )
    finally:
        db.close()


@pytest.fixture
def office(make_esam: Any) -> EsamProcess:
    """A server whose registry policy accepts what the employee has checked on paper."""
    p: EsamProcess = make_esam(registration={"registry_policy": "accept"})
    p.esam("init")
    p.add_staff("e-17")
    p.start()
    return p


def test_register_then_swaks_and_imap_in_the_same_second(office: EsamProcess) -> None:
    res = register(office, "asem", "--json")
    start = time.monotonic()
    data = json.loads(res.stdout)
    assert data["address"] == "asem@esam.test" and data["status"] == "active"
    assert "password" not in data  # the applicant chose it
    body = "Қош келдіңіз! Welcome to your new mailbox.\r\n"
    sent = swaks(office, "asem@esam.test", body)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "250 2.0.0" in sent.stdout
    m = imaps(office, "asem", PASSWORD)
    bodies = fetch_bodies(m)
    m.logout()
    elapsed = time.monotonic() - start
    notices, mail = notices_and_mail(bodies)
    assert len(notices) == 1  # the welcome notice with client settings, then the sender's mail
    assert [body_of(b).rstrip(b"\r\n") for b in mail] == [body.rstrip().encode()]
    print(f"registration -> swaks -> IMAP read: {elapsed:.3f}s")
    assert elapsed < 1.0, f"registration to IMAP read took {elapsed:.2f}s"


def test_generated_password_is_printed_once_and_works(office: EsamProcess) -> None:
    res = office.esam("register", "individual", *FORM, "--username", "asem.gen")
    assert "registered asem.gen@esam.test (active)" in res.stdout
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("password (shown once): ")]
    password = line.split(": ", 1)[1]
    m = imaps(office, "asem.gen", password)
    m.logout()


def test_bad_input_exits_2_naming_the_field_and_writes_nothing(office: EsamProcess) -> None:
    args = [a if a != "850525400017" else "850525400018" for a in FORM]
    res = office.esam("register", "individual", *args, "--username", "asem", "--password-stdin",
                      input=PASSWORD + "\n", check=False)  # fmt: skip
    assert res.returncode == 2
    assert "esam: iin: " in res.stderr and "--iin" in res.stderr
    res = office.esam("register", "individual", *FORM, "--username", "postmaster", check=False)
    assert res.returncode == 2 and "esam: username: " in res.stderr
    res = office.esam("register", "individual", *FORM[:-2], "--username", "asem", check=False)
    assert res.returncode == 2 and "esam: accept_agreement: " in res.stderr
    assert counts(office) == (0, 0, 0)
    assert not (office.data / "mail" / "asem").exists()
    assert swaks(office, "asem@esam.test", "x").returncode != 0  # no such mailbox


def test_taken_login_exits_2(office: EsamProcess) -> None:
    register(office, "asem")
    other = [a if a != "850525400017" else "900101300811" for a in FORM]
    other = [a for a in other if a not in ("--birth-date", "1985-05-25")]
    res = office.esam("register", "individual", *other, "--username", "ASEM", check=False)
    assert res.returncode == 2 and "login taken" in res.stderr
    assert counts(office) == (1, 1, 1)


def test_held_mailbox_waits_for_approval(make_esam: Any) -> None:
    p: EsamProcess = make_esam(registration={"registry_policy": "hold"})
    p.esam("init")
    p.add_staff("e-17")
    p.start()
    res = register(p, "asem")
    assert "registered asem@esam.test (held)" in res.stdout
    assert "esam mailbox approve asem" in res.stdout
    refused = swaks(p, "asem@esam.test", "too early")
    assert refused.returncode != 0
    approved = p.esam("mailbox", "approve", "asem", "--actor", "employee:e-20")
    assert "asem@esam.test: active" in approved.stdout
    sent = swaks(p, "asem@esam.test", "now\r\n")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    m = imaps(p, "asem", PASSWORD)
    _notices, mail = notices_and_mail(fetch_bodies(m))
    assert len(mail) == 1 and body_of(mail[0]).startswith(b"now")  # "too early" never arrived
    m.logout()
    audit = json.loads(p.esam("audit", "list", "--json").stdout)
    assert [(e["action"], e["actor"]) for e in audit if e["action"].startswith("mailbox.")][:2] == [
        ("mailbox.approve", "employee:e-20/os=root"),  # an administrator named the actor
        ("mailbox.register", "employee:e-17"),
    ]


def test_agreement_show(office: EsamProcess) -> None:
    out = office.esam("agreement", "show").stdout
    assert out.startswith("version: 2026-1\nsha256: ")
    assert "USER AGREEMENT" in out
    data = json.loads(office.esam("agreement", "show", "--json").stdout)
    assert len(data["sha256"]) == 64 and data["version"] == "2026-1"
