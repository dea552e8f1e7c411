"""Logins nobody can mistake for an identity, and paper mail addressed by identity (issue 16, item 1).

Through ``esam`` in process: ``register``, ``mailbox add``, ``mailbox show``, ``hybrid ingest``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from reportlab.pdfgen.canvas import Canvas

from esam_mail.errors import ValidationError
from esam_mail.services.accounts import logins
from esam_mail.services.accounts.identity import normalize_username
from tests.conftest import ROOT
from tests.unit.accounts.conftest import Cli
from tests.unit.registration.test_cli import FLAGS, OFFICE

GOOD = "Zhibek-Zholy-77"
OTHER_IIN = "870322400007"  # someone else's IIN (checksum valid)


def _with(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def scan_pdf(tmp: Path) -> Path:
    buf = io.BytesIO()
    c = Canvas(buf)
    c.drawString(72, 72, "scanned paper letter")
    c.showPage()
    c.save()
    path = tmp / "scan.pdf"
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    "username",
    [
        OTHER_IIN,  # the issue: a login that is another person's IIN
        "123",
        "7701234567",
        "8703-2240-0007",
        "iin870322400007",
        "870322400007.asem",
        "gov", "gov.kz", "almaty-gov", "egov", "akimat", "almaty.akimat", "akimatalmaty", "mvd", "mvd.kz",
        "prokuratura", "kazpost", "kazpost.help", "esam.support", "official",
    ],
)  # fmt: skip
def test_register_refuses_number_shaped_and_protected_logins(cli: Cli, username: str) -> None:
    rc, out, err = cli("register", "individual", *_with([*FLAGS, *OFFICE], "--username", username),
                       "--password-stdin", stdin=GOOD + "\n")
    assert rc == 2 and "esam: username: " in err and "(--username)" in err, err
    rc, out, _ = cli("mailbox", "list", "--json")
    assert out.strip() == "[]"


@pytest.mark.parametrize("username", ["govorov", "asem.2026", "mvdovina", "akim.asem"])
def test_ordinary_names_that_merely_resemble_stay_free(username: str) -> None:
    cfg = _cfg()
    assert logins.check_login(username, cfg) == username


def _cfg(**mail: object) -> object:
    from esam_mail import config

    return config.from_dict({"mail": dict(mail), "registration": {"agreement_file": str(ROOT / "conf/agreement.txt")}})


def test_personal_and_service_mailbox_add_refuse_digits(cli: Cli) -> None:
    for kind in ("personal", "service"):
        rc, _, err = cli("mailbox", "add", OTHER_IIN, "--kind", kind, "--password-stdin", stdin=GOOD + "\n")
        assert rc == 2 and "esam: login: " in err and "IIN" in err, err
    rc, _, err = cli("mailbox", "add", "akimat", "--kind", "personal", "--password-stdin", stdin=GOOD + "\n")
    assert rc == 2 and "reserved" in err


def test_shipped_list_is_in_conf_and_documented() -> None:
    conf = ROOT / "conf" / "reserved-names.txt"
    assert conf.read_text() == logins.DEFAULT_RESERVED_FILE.read_text()
    entries = logins.parse_reserved(conf.read_text())
    assert {"gov", "*akimat*", "mvd", "*kazpost*"} <= set(entries)
    assert "#reserved_names_file = \"\"" in (ROOT / "conf" / "esam.toml").read_text()


def test_operator_file_adds_names(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "ours.txt"
    extra.write_text("# our services\nqazpost-bank\n*tolem*\n")
    cli = Cli(tmp_path, capsys, monkeypatch, mail={"reserved_names_file": str(extra)})
    for name in ("qazpost-bank", "tolem.kz", "gov"):  # the shipped list still applies
        rc, _, err = cli("register", "individual", *_with([*FLAGS, *OFFICE], "--username", name),
                         "--password-stdin", stdin=GOOD + "\n")
        assert rc == 2 and "reserved" in err, (name, err)


def test_missing_operator_file_is_a_config_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from esam_mail.cli import main
    from tests.conftest import write_config

    path = write_config(tmp_path, mail={"reserved_names_file": str(tmp_path / "nope.txt")})
    with pytest.raises(SystemExit) as ei:
        main(["-c", str(path), "check-config"])
    assert ei.value.code == 78
    assert "mail.reserved_names_file: cannot read" in capsys.readouterr().err


def test_reserved_patterns_match_lookalikes() -> None:
    with pytest.raises(ValidationError):
        normalize_username("a.k.i.m.a.t", reserved=["*akimat*"])
    assert normalize_username("govorov", reserved=["gov", "gov[._-]*"]) == "govorov"


def test_mailbox_show_names_the_owner_with_masked_iin(cli: Cli) -> None:
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin=GOOD + "\n")
    assert rc == 0, err
    shown = cli.json("mailbox", "show", "asem")
    assert shown["owner"] == {"kind": "individual", "name": "Ахметова Әсем", "iin": "********0017"}
    rc, out, _ = cli("mailbox", "show", "asem")
    assert "owner          individual, IIN ********0017, Ахметова Әсем" in out
    assert "850525400017" not in out
    rc, _, _ = cli("mailbox", "add", "helpdesk2", "--password-stdin", stdin=GOOD + "\n")
    assert cli.json("mailbox", "show", "helpdesk2")["owner"] is None


def test_hybrid_ingest_addresses_by_iin_or_id_never_by_login(cli: Cli, tmp_path: Path) -> None:
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin=GOOD + "\n")
    assert rc == 0, err
    scan = str(scan_pdf(tmp_path))
    common = ["--scan", scan, "--facility", "ALA01", "--employee", "h-1"]
    for to, needle in (("asem", "not by a login"), ("asem@esam.test", "not by a login"),
                       (OTHER_IIN, "no open mailbox is held by IIN/BIN ********0007"),
                       ("850525400018", "not a valid IIN/BIN"), ("#999", "no mailbox with id #999")):
        rc, _, err = cli("hybrid", "ingest", "--to", to, *common)
        assert rc == 2 and err.startswith("esam: to: ") and needle in err, (to, err)
    done = cli.json("hybrid", "ingest", "--to", "850525400017", *common)
    assert done["to"] == "asem@esam.test"
    mailbox_id = cli.json("mailbox", "show", "asem")["id"]
    again = cli.json("hybrid", "ingest", "--to", f"#{mailbox_id}", *common)
    assert again["to"] == "asem@esam.test"
    audit = cli.json("audit", "list", "--action", "hybrid.ingest")
    assert [a["outcome"] for a in audit].count("refused") == 5
