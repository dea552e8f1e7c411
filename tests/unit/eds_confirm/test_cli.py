"""``esam eds challenge|confirm|status``: the CLI over a real directory (SQLite)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests import eds_testing as t
from tests.conftest import add_staff, write_config
from tests.unit.eds_confirm.conftest import OTHER_IIN, individual_raw


@pytest.fixture
def esam(tmp_path: Path, pki: t.DemoPki, capsys: pytest.CaptureFixture[str]) -> Any:
    from esam_mail import app, config
    from esam_mail.cli import main

    anchors = tmp_path / "root.pem"
    anchors.write_bytes(pki.root.pem)
    path = write_config(
        tmp_path, eds={"trust_anchors": [str(anchors)]}, registration={"registry_policy": "accept"}
    )
    app.init(config.load(path))
    add_staff(config.load(path).directory_url, "e-1")
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["-c", str(path), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    form = tmp_path / "form.json"
    form.write_text(json.dumps(individual_raw()), encoding="utf-8")
    code, _, err = run(
        "register", "individual", "--from-json", str(form), "--office", "ALA01", "--employee", "e-1",
        "--accept-agreement", config.load(path).registration.agreement_version,
    )  # fmt: skip
    assert code == 0, err
    return run


def test_challenge_confirm_status(esam: Any, tmp_path: Path, pki: t.DemoPki) -> None:
    code, out, _ = esam("eds", "status", "test.testov")
    assert code == 0 and "not confirmed" in out
    challenge_file = tmp_path / "challenge.txt"
    code, out, _ = esam("eds", "challenge", "test.testov", "--out", str(challenge_file), "--json")
    assert code == 0
    issued = json.loads(out)
    assert challenge_file.read_bytes() == issued["challenge"].encode()
    assert issued["address"] == "test.testov@esam.test"

    cms = t.sign_cms(
        challenge_file.read_bytes(), pki.individual.cert, pki.individual.key, [pki.intermediate.cert]
    )
    cms_file = tmp_path / "cms.b64"
    cms_file.write_text(base64.b64encode(cms).decode())  # NCALayer's Base64 is accepted as is
    code, out, err = esam("eds", "confirm", "test.testov", "--cms", str(cms_file))
    assert code == 0, err
    assert "EDS-confirmed" in out and pki.individual.cert.fingerprint(t.hashes.SHA256()).hex() in out

    code, out, _ = esam("eds", "status", "test.testov@esam.test", "--json")
    status = json.loads(out)
    assert status["confirmed"] is True and status["latest"]["signer_iin"] == t.DEFAULT_IIN

    code, _, err = esam("eds", "confirm", "test.testov", "--cms", str(cms_file))
    assert code == 1 and "challenge_used" in err


def test_refusals_and_exit_codes(esam: Any, tmp_path: Path, pki: t.DemoPki) -> None:
    code, out, _ = esam("eds", "challenge", "test.testov")
    assert code == 0
    text = out.splitlines()[0]
    other = t.individual_cert(pki.intermediate, iin=OTHER_IIN, key=t.cached_key("rsa", 0))
    cms_file = tmp_path / "cms.der"
    cms_file.write_bytes(t.sign_cms(text.encode(), other.cert, other.key, [pki.intermediate.cert]))
    code, _, err = esam("eds", "confirm", "test.testov", "--cms", str(cms_file), "--challenge", text)
    assert code == 1 and "signer_mismatch" in err
    code, out, _ = esam("eds", "status", "test.testov")
    assert "not confirmed" in out

    code, _, err = esam("eds", "confirm", "test.testov", "--cms", str(tmp_path / "missing.der"))
    assert code == 2 and err.startswith("esam: cms: cannot read")
    code, _, err = esam("eds", "challenge", "nobody")
    assert code == 3 and "not found" in err
    code, _, err = esam("eds", "status", "nobody")
    assert code == 3


def test_help_lists_the_actions(capsys: pytest.CaptureFixture[str]) -> None:
    from esam_mail.cli import main

    with pytest.raises(SystemExit):
        main(["eds", "--help"])
    out = capsys.readouterr().out
    assert all(word in out for word in ("challenge", "confirm", "status"))


def test_openssl_signed_challenge(esam: Any, tmp_path: Path, pki: t.DemoPki) -> None:
    """The docs' recipe: ``openssl cms -sign -binary`` over the --out file confirms the mailbox."""
    import shutil
    import subprocess

    from cryptography.hazmat.primitives import serialization

    openssl = shutil.which("openssl") or pytest.fail("openssl is not installed: run `bash scripts/test.sh`")
    (tmp_path / "cert.pem").write_bytes(pki.individual.pem)
    (tmp_path / "inter.pem").write_bytes(pki.intermediate.pem)
    key = pki.individual.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "key.pem").write_bytes(key)
    challenge = tmp_path / "challenge.txt"
    assert esam("eds", "challenge", "test.testov", "--out", str(challenge))[0] == 0
    subprocess.run(
        [openssl, "cms", "-sign", "-binary", "-outform", "DER", "-in", str(challenge),
         "-signer", str(tmp_path / "cert.pem"), "-inkey", str(tmp_path / "key.pem"),
         "-certfile", str(tmp_path / "inter.pem"), "-out", str(tmp_path / "cms.der")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    code, out, err = esam("eds", "confirm", "test.testov", "--cms", str(tmp_path / "cms.der"))
    assert code == 0, err
    assert "EDS-confirmed" in out
