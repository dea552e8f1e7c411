"""`esam eds test-pki init|issue` for staging (issue 16, item 6), through the CLI in process.

The certificates it issues verify against the test root with ``eds.test_ca_mode = true``, carry
IINs/BINs that pass the checksum, and legal-entity roles decide who may sign for the entity.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from esam_mail.cli import main
from esam_mail.services.accounts.confirmation import RoleNotAllowed, check_signer, verifier_from_config
from esam_mail.services.accounts.identity import checksum_ok
from tests import eds_testing as t
from tests.conftest import ROOT, write_config

IIN = "850525400017"
BIN = "150340001236"


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["-c", str(config), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_init_issue_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from esam_mail import config

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    path = write_config(tmp_path, eds={"test_ca_mode": True})
    cfg = config.load(path)
    rc, out, err = cli(path, capsys, "eds", "test-pki", "init", "--json")
    assert rc == 0, err
    made = json.loads(out)
    assert "TEST ҰЛТТЫҚ КУӘЛАНДЫРУШЫ ОРТАЛЫҚ" in made["intermediate_subject"]
    rc, _, err = cli(path, capsys, "eds", "test-pki", "init")
    assert rc == 2 and "--force" in err  # never overwritten by accident
    oct_mode = (Path(made["folder"]) / "root.key").stat().st_mode & 0o777
    assert oct_mode == 0o600

    rc, out, err = cli(path, capsys, "eds", "test-pki", "issue", "--iin", IIN, "--surname", "Ахметова",
                       "--given-name", "Әсем", "--json")
    assert rc == 0, err
    person = json.loads(out)
    rc, out, err = cli(path, capsys, "eds", "test-pki", "issue", "--iin", "751111300031", "--surname", "Фёдоров",
                       "--given-name", "Пётр", "--bin", BIN, "--organization", "ТОО Ромашка", "--role", "first_head",
                       "--json")
    assert rc == 0, err
    head = json.loads(out)
    rc, out, err = cli(path, capsys, "eds", "test-pki", "issue", "--iin", "751111300031", "--surname", "Фёдоров",
                       "--given-name", "Пётр", "--bin", BIN, "--role", "employee", "--json")
    assert rc == 0, err
    employee = json.loads(out)
    rc, _, err = cli(path, capsys, "eds", "test-pki", "issue", "--iin", "850525400018", "--surname", "X",
                     "--given-name", "Y")
    assert rc == 2 and "iin" in err  # the check digit is wrong: refused

    verifier = verifier_from_config(cfg)
    assert verifier is not None

    def signer(files: dict[str, str]) -> object:
        cert = x509.load_pem_x509_certificate(Path(files["cert"]).read_bytes())
        key = serialization.load_pem_private_key(Path(files["key"]).read_bytes(), password=None)
        chain = x509.load_pem_x509_certificates(Path(files["chain"]).read_bytes())[1:2]
        cms = t.sign_cms(b"esam-confirm:x", cert, key, chain)  # type: ignore[arg-type]
        return verifier.verify(base64.b64encode(cms).decode(), b"esam-confirm:x")

    who = signer(person)
    assert who.iin == IIN and checksum_ok(who.iin)  # type: ignore[attr-defined]
    check_signer(who, kind="individual", iin=IIN, bin=None)  # type: ignore[arg-type]
    boss = signer(head)
    assert boss.bin == BIN  # type: ignore[attr-defined]
    check_signer(boss, kind="legal_entity", iin=None, bin=BIN)  # type: ignore[arg-type]
    with pytest.raises(RoleNotAllowed):
        check_signer(signer(employee), kind="legal_entity", iin=None, bin=BIN)  # type: ignore[arg-type]
    key, cert, extra = pkcs12.load_key_and_certificates(Path(person["p12"]).read_bytes(), b"test")
    assert key is not None and cert is not None and len(extra) == 2  # for NCALayer


def test_the_test_helper_left_the_runtime_package() -> None:
    assert not (ROOT / "esam_mail" / "services" / "eds_testing.py").exists()
    runtime = (ROOT / "esam_mail" / "services" / "accounts" / "test_pki.py").read_text()
    assert "def sign_cms" not in runtime and "def default_pki" not in runtime
