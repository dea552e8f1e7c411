"""`esam official` and `esam evidence` as a subprocess: a sender is registered, a document
to an IIN without a confirmed mailbox is refused (exit 1, the message names paper/hybrid
mail and the evidence id), the evidence is exported and verifies offline with only the
operator's certificate, and a tampered copy fails `esam evidence verify`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import EsamProcess

pytestmark = pytest.mark.e2e

IIN = "850525400017"


def test_refusal_evidence_exports_verifies_and_a_tampered_copy_fails(tmp_path: Path) -> None:
    p = EsamProcess(tmp_path)
    init = p.esam("init").stdout
    assert "evidence signing key" in init
    cert = p.data / "official" / "operator-cert.pem"
    p.esam("official", "sender", "add", "kgd", "--display-name", "State Revenue Committee",
           "--fingerprint", "AB:" * 31 + "AB")
    listed = json.loads(p.esam("official", "sender", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["kgd"]

    doc = tmp_path / "notice.pdf"
    doc.write_bytes(b"%PDF-1.4 notice")
    res = p.esam("official", "send", "--sender", "kgd", "--to", f"IIN{IIN}", "--document", str(doc),
                 "--subject", "Notice", check=False)
    assert res.returncode == 1
    assert "no_confirmed_mailbox" in res.stderr and "paper" in res.stderr
    m = re.search(r"\[evidence: (OM\w+)\]", res.stderr)
    assert m, res.stderr
    mid = m.group(1)

    exported = tmp_path / "evidence.json"
    shown = p.esam("evidence", "show", mid, "--export", str(exported)).stdout
    assert "SUBMITTED" in shown and "REJECTED" in shown and "chain verified" in shown

    ok = p.esam("evidence", "verify", str(exported), "--cert", str(cert), "--json")
    assert json.loads(ok.stdout) == {"valid": True, "records": 2, "events": ["SUBMITTED", "REJECTED"]}

    chain = json.loads(exported.read_text())
    chain["records"][1]["reason"] = "delivered_after_all"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(chain))
    bad = p.esam("evidence", "verify", str(tampered), "--cert", str(cert), check=False)
    assert bad.returncode == 1
    assert "does NOT verify" in bad.stderr and "record 2" in bad.stderr

    # bad input names the field
    res = p.esam("official", "send", "--sender", "kgd", "--to", "IIN123", "--document", str(doc),
                 "--subject", "x", check=False)
    assert res.returncode == 2 and "recipient" in res.stderr
