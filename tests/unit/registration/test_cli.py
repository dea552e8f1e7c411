"""`esam register`, `esam agreement show` and `esam mailbox approve`, in process (SQLite).

Every invalid field: exit 2, one ``esam: field: message (--flag)`` line per
problem, and nothing in the database or the store (rules, appendix; para. 5, 6).
"""

from __future__ import annotations

import copy
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from esam_mail.cli import main
from tests.conftest import add_staff, migrate_directory, write_config
from tests.unit.registration.samples import INDIVIDUAL, LEGAL_ENTITY

FLAGS = [
    "--surname", "Ахметова", "--given-name", "Әсем", "--iin", "850525400017",
    "--doc-type", "id card", "--doc-number", "041234567", "--doc-issuer", "МВД РК",
    "--doc-issue-date", "2018-03-01", "--region", "Алматинская область", "--locality", "Қонаев",
    "--street", "ул. Абая", "--house", "12", "--postcode", "B01P3K4",
    "--mobile-phone", "+7 701 123 45 67", "--username", "asem",
]  # fmt: skip
OFFICE = ["--office", "ALA01", "--employee", "e-17", "--accept-agreement", "2026-1"]

LEGAL_FLAGS = [
    "--name", "ТОО «Ромашка»", "--bin", "150340001236", "--cert-number", "12345-1910-ТОО",
    "--cert-date", "2015-03-10",
    "--legal-locality", "Астана", "--legal-street", "пр. Мәңгілік Ел", "--legal-house", "55",
    "--legal-postcode", "010000",
    "--actual-locality", "Астана", "--actual-street", "ул. Кенесары", "--actual-house", "7",
    "--actual-postcode", "010000",
    "--work-phone", "+7 7172 55 55 55", "--mobile-phone", "+7 777 000 11 22", "--username", "romashka",
    "--rep-surname", "Фёдоров", "--rep-given-name", "Пётр", "--rep-iin", "751111300031",
]  # fmt: skip


class Cli:
    def __init__(
        self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from esam_mail import config

        self.tmp = tmp
        self.config = write_config(tmp, registration={"registry_policy": "accept"})
        self.cfg = config.load(self.config)
        migrate_directory(self.cfg.directory_url)
        add_staff(self.cfg.directory_url, "e-17")  # --employee is checked against staff accounts
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        rc = main(["-c", str(self.config), *args])
        out, err = self.capsys.readouterr()
        return rc, out, err

    def written(self) -> tuple[int, int, int, int]:
        db = sqlite3.connect(self.cfg.data_dir / "directory.db")
        try:
            n = [
                db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("subscribers", "applications", "mailboxes")
            ]
        finally:
            db.close()
        root = self.cfg.store_path
        # users' maildirs; not the store's .esam-locks (the processes' dotlock sources)
        maildirs = len([p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]) if root.exists() else 0
        return n[0], n[1], n[2], maildirs


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)


def test_register_individual_by_flags(cli: Cli) -> None:
    rc, out, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin="correct horse\n")
    assert rc == 0, err
    assert out.splitlines()[:2] == ["registered asem@esam.test (active)", "login: asem"]
    assert "notified by e-mail" in out.splitlines()[2]  # the welcome mail is in the INBOX
    assert cli.written() == (1, 1, 1, 1)


def test_register_generates_password_and_json(cli: Cli) -> None:
    rc, out, err = cli("register", "individual", *FLAGS, *OFFICE, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["address"] == "asem@esam.test" and len(data["password"]) >= 12


def test_register_legal_entity_by_flags(cli: Cli) -> None:
    rc, out, err = cli("register", "legal-entity", *LEGAL_FLAGS, *OFFICE, "--json")
    assert rc == 0, err
    assert json.loads(out)["address"] == "romashka@esam.test"
    rc, out, err = cli("register", "legal-entity", *LEGAL_FLAGS[:-8], "--username", "romashka.hr", *OFFICE)
    assert rc == 0, err  # a legal entity may hold several mailboxes
    assert cli.written() == (2, 2, 2, 2)


def test_register_from_json_with_flag_override(cli: Cli, tmp_path: Path) -> None:
    raw = copy.deepcopy(INDIVIDUAL)
    raw["residence_address"]["postcode"] = "bad"
    path = tmp_path / "app.json"
    path.write_text(json.dumps(raw, ensure_ascii=False))
    rc, _, err = cli("register", "individual", "--from-json", str(path), *OFFICE)
    assert rc == 2 and "esam: residence_address.postcode: " in err and "(--postcode)" in err
    assert cli.written() == (0, 0, 0, 0)
    rc, out, err = cli("register", "individual", "--from-json", str(path), "--postcode", "050000", *OFFICE)
    assert rc == 0, err
    assert "registered asem.akhmetova@esam.test (active)" in out


def test_register_legal_entity_from_json(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "le.json"
    path.write_text(json.dumps({**LEGAL_ENTITY, "kind": "legal_entity"}, ensure_ascii=False))
    rc, _, err = cli("register", "legal-entity", "--from-json", str(path), *OFFICE)
    assert rc == 0, err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_register_from_bad_json(cli: Cli, tmp_path: Path, content: str) -> None:
    path = tmp_path / "app.json"
    path.write_text(content)
    rc, _, err = cli("register", "individual", "--from-json", str(path), *OFFICE)
    assert rc == 2 and err.startswith("esam: from_json: ")
    rc, _, err = cli("register", "individual", "--from-json", str(tmp_path / "missing.json"), *OFFICE)
    assert rc == 2 and "from_json" in err


def _with(args: list[str], flag: str, value: str | None) -> list[str]:
    out = list(args)
    i = out.index(flag)
    if value is None:
        del out[i : i + 2]
    else:
        out[i + 1] = value
    return out


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--surname", None, "surname"),
        ("--iin", "000000000000", "iin"),
        ("--iin", "850525400018", "iin"),
        ("--doc-type", "library card", "id_document.type"),
        ("--doc-issue-date", "2099-01-01", "id_document.issue_date"),
        ("--postcode", "1234", "residence_address.postcode"),
        ("--region", None, "residence_address.region"),
        ("--mobile-phone", "call me", "mobile_phone"),
        ("--username", "Post.Master", "username"),
        ("--username", "a_", "username"),
        ("--office", None, "office"),
        ("--employee", None, "employee"),
        ("--accept-agreement", None, "accept_agreement"),
        ("--accept-agreement", "2025-9", "accept_agreement"),
    ],
)
def test_each_bad_flag_exits_2_naming_it(cli: Cli, flag: str, value: str | None, field: str) -> None:
    args = _with([*FLAGS, *OFFICE], flag, value)
    rc, out, err = cli("register", "individual", *args, "--password-stdin", stdin="correct horse\n")
    assert rc == 2
    assert f"esam: {field}: " in err and f"({flag})" in err, err
    assert out == ""
    assert cli.written() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--bin", "949940000385", "bin"),
        ("--cert-date", "tomorrow", "registration.date"),
        ("--legal-postcode", "x", "legal_address.postcode"),
        ("--actual-house", None, "actual_address.house"),
        ("--work-phone", None, "work_phone"),
        ("--rep-iin", "751111300032", "representative.iin"),
    ],
)
def test_each_bad_legal_flag_exits_2_naming_it(cli: Cli, flag: str, value: str | None, field: str) -> None:
    rc, _, err = cli("register", "legal-entity", *_with([*LEGAL_FLAGS, *OFFICE], flag, value))
    assert rc == 2
    assert f"esam: {field}: " in err and f"({flag})" in err, err
    assert cli.written() == (0, 0, 0, 0)


def test_short_or_empty_password_on_stdin(cli: Cli) -> None:
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin="\n")
    assert rc == 2 and "esam: password: " in err
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin="short\n")
    assert rc == 2 and "esam: password: " in err
    assert cli.written() == (0, 0, 0, 0)


def test_login_taken_exits_2(cli: Cli) -> None:
    assert cli("register", "individual", *FLAGS, *OFFICE)[0] == 0
    other = _with(_with(FLAGS, "--iin", "900101300811"), "--username", "ASEM")
    rc, _, err = cli("register", "individual", *other, *OFFICE)
    assert rc == 2 and "esam: username: login taken" in err


def test_agreement_show(cli: Cli) -> None:
    from esam_mail.services.accounts.registration import agreement_sha256, agreement_text

    rc, out, _ = cli("agreement", "show")
    assert rc == 0
    assert out.startswith(f"version: 2026-1\nsha256: {agreement_sha256(cli.cfg)}\n\n")
    rc, out, _ = cli("agreement", "show", "--json")
    data: dict[str, Any] = json.loads(out)
    assert data["text"] == agreement_text(cli.cfg) and data["version"] == "2026-1"


def test_mailbox_approve(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from esam_mail import config

    held = write_config(cli.tmp, registration={"registry_policy": "hold"})
    cli.config = held
    cli.cfg = config.load(held)
    rc, out, _ = cli("register", "individual", *FLAGS, *OFFICE)
    assert rc == 0 and "registered asem@esam.test (held)" in out
    rc, out, _ = cli("mailbox", "list", "--state", "held")
    assert "asem@esam.test" in out
    rc, out, _ = cli("mailbox", "approve", "asem", "--actor", "employee:e-20", "--json")
    assert rc == 0 and json.loads(out)["state"] == "active"
    rc, _, err = cli("mailbox", "approve", "asem")
    assert rc == 2 and "not held" in err
    rc, _, err = cli("mailbox", "approve", "nobody")
    assert rc == 3
    rc, out, _ = cli("audit", "list", "--json")
    actions = [(e["action"], e["actor"]) for e in json.loads(out)]
    # an administrator (root here) may name the actor; the OS user is kept beside it
    assert actions[0][0] == "mailbox.approve" and actions[0][1].startswith("employee:e-20/os=")


def _applications(cli: Cli) -> list[tuple[str, str | None, str | None, str | None]]:
    db = sqlite3.connect(cli.cfg.data_dir / "directory.db")
    try:
        return db.execute(
            "SELECT requested_username, signer_role, poa_number, poa_date FROM applications ORDER BY id"
        ).fetchall()
    finally:
        db.close()


def test_register_legal_entity_records_the_signer_role(cli: Cli) -> None:
    """Issue 18 item 4: head (default), or a representative under a power of attorney."""
    rc, _, err = cli("register", "legal-entity", *LEGAL_FLAGS, *OFFICE)
    assert rc == 0, err
    rc, _, err = cli(
        "register", "legal-entity", *LEGAL_FLAGS[:-8], "--username", "romashka.rep", *OFFICE,
        "--signer-role", "representative", "--poa-number", "Д-17/2026", "--poa-date", "2026-01-15",
    )  # fmt: skip
    assert rc == 0, err
    assert _applications(cli) == [
        ("romashka", "head", None, None),
        ("romashka.rep", "representative", "Д-17/2026", "2026-01-15"),
    ]


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        (["--signer-role", "boss"], ["signer_role"]),
        (["--signer-role", "representative"], ["poa_number", "poa_date"]),
        (["--signer-role", "representative", "--poa-number", "7", "--poa-date", "2999-01-01"], ["poa_date"]),
        (["--signer-role", "head", "--poa-number", "7"], ["poa_number"]),
    ],
)
def test_bad_signer_role_options_exit_2_naming_the_field(cli: Cli, extra: list[str], fields: list[str]) -> None:
    rc, out, err = cli("register", "legal-entity", *LEGAL_FLAGS, *OFFICE, *extra)
    assert rc == 2 and out == ""
    for field in fields:
        flag = "--" + field.replace("_", "-")
        assert f"esam: {field}: " in err and f"({flag})" in err, err
    assert cli.written() == (0, 0, 0, 0)
