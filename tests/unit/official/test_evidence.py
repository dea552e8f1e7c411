"""Evidence records: signed, hash-chained, verified offline with only the operator's
certificate; every kind of tampering is caught and named."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from esam_mail.services.official.evidence import (
    EvidenceInvalid,
    OperatorKey,
    canonical,
    chain_document,
    ensure_operator_key,
    make_record,
    record_hash,
    verify_chain,
)

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)


def _key(tmp: Path, name: str = "op") -> OperatorKey:
    cert, key = tmp / f"{name}-cert.pem", tmp / f"{name}-key.pem"
    assert ensure_operator_key(cert, key, hostname="mx.esam.test", domain="esam.test")
    assert not ensure_operator_key(cert, key, hostname="mx.esam.test", domain="esam.test")  # idempotent
    assert key.stat().st_mode & 0o077 == 0
    return OperatorKey.load(cert, key)


def _chain(op: OperatorKey, events: tuple[str, ...] = ("SUBMITTED", "DELIVERED", "RETRIEVED")) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    prev = None
    for i, ev in enumerate(events, start=1):
        rec = make_record(
            message_id="OM1", seq=i, event=ev, at=T0 + dt.timedelta(minutes=i), prev_hash=prev,
            sender={"name": "kgd", "display_name": "КГД", "bin": "940140000385"},
            recipient={"kind": "iin", "id": "900101300811", "address": "a@esam.test"},
            document={"name": "notice.pdf", "sha256": "00" * 32, "signed_by": "sender", "signer_cert_sha256": None},
        )
        signed = op.sign_record(rec)
        prev = record_hash(signed)
        records.append(signed)
    # what goes over the wire / into a file is JSON: verify the parsed form
    return json.loads(json.dumps(chain_document("OM1", records), ensure_ascii=False))


def test_chain_verifies_with_the_operator_certificate(tmp_path: Path) -> None:
    op = _key(tmp_path)
    recs = verify_chain(_chain(op), op.cert)
    assert [r["event"] for r in recs] == ["SUBMITTED", "DELIVERED", "RETRIEVED"]
    assert [r["etsi_event"] for r in recs] == ["SubmissionAcceptance", "ContentConsignment", "ContentHandover"]
    assert recs[1]["prev_hash"] == record_hash(recs[0])
    assert canonical({"b": 1, "a": "ә"}) == '{"a":"ә","b":1}'.encode()


def _tamper_field(doc: dict[str, Any]) -> None:
    doc["records"][1]["recipient"]["address"] = "mallory@esam.test"


def _tamper_time(doc: dict[str, Any]) -> None:
    doc["records"][2]["time"] = "2026-12-01T00:00:00Z"


def _drop_middle(doc: dict[str, Any]) -> None:
    del doc["records"][1]


def _swap(doc: dict[str, Any]) -> None:
    doc["records"][1], doc["records"][2] = doc["records"][2], doc["records"][1]


def _strip_signature(doc: dict[str, Any]) -> None:
    del doc["records"][0]["signature"]


def _truncate_value(doc: dict[str, Any]) -> None:
    doc["records"][0]["signature"]["value"] = doc["records"][0]["signature"]["value"][:-8] + "AAAAAAA="


@pytest.mark.parametrize(("tamper", "says"), [
    (_tamper_field, "record 2: the signature does not verify"),
    (_tamper_time, "record 3: the signature does not verify"),
    (_drop_middle, "record 2: sequence number 3"),
    (_swap, "record 2: sequence number 3"),
    (_strip_signature, "record 1: unsigned"),
    (_truncate_value, "record 1: the signature does not verify"),
])
def test_tampered_chain_fails_and_names_the_record(tmp_path: Path, tamper: Any, says: str) -> None:
    op = _key(tmp_path)
    doc = _chain(op)
    tamper(doc)
    with pytest.raises(EvidenceInvalid, match=says):
        verify_chain(doc, op.cert)


def test_a_record_resigned_by_another_key_fails(tmp_path: Path) -> None:
    op, other = _key(tmp_path), _key(tmp_path, "other")
    doc = _chain(op)
    forged = other.sign_record(doc["records"][2])
    doc["records"][2] = json.loads(json.dumps(forged))
    with pytest.raises(EvidenceInvalid, match="record 3: signed with another certificate"):
        verify_chain(doc, op.cert)
    with pytest.raises(EvidenceInvalid, match="record 1: signed with another certificate"):
        verify_chain(_chain(op), other.cert)


def test_relinked_copy_with_a_fresh_signature_of_the_same_key_still_breaks_the_links(tmp_path: Path) -> None:
    """Even the key holder cannot silently change a middle record: the next prev_hash breaks."""
    op = _key(tmp_path)
    doc = _chain(op)
    changed = copy.deepcopy(doc["records"][1])
    changed["time"] = "2026-12-04T09:00:00Z"
    doc["records"][1] = json.loads(json.dumps(op.sign_record(changed)))
    with pytest.raises(EvidenceInvalid, match="record 3: does not link"):
        verify_chain(doc, op.cert)


def test_event_order_is_enforced(tmp_path: Path) -> None:
    op = _key(tmp_path)
    with pytest.raises(EvidenceInvalid, match="'RETRIEVED' cannot follow SUBMITTED"):
        verify_chain(_chain(op, ("SUBMITTED", "RETRIEVED")), op.cert)
    assert len(verify_chain(_chain(op, ("SUBMITTED", "REJECTED")), op.cert)) == 2
    assert len(verify_chain(_chain(op, ("SUBMITTED", "DELIVERED", "EXPIRED")), op.cert)) == 3


def test_not_a_chain(tmp_path: Path) -> None:
    op = _key(tmp_path)
    for bad in ([], {"format": "x"}, {"format": "esam-evidence-chain/1", "records": []}):
        with pytest.raises(EvidenceInvalid):
            verify_chain(bad, op.cert)


def test_gateway_signature_is_a_detached_cms_over_the_document(tmp_path: Path) -> None:
    """The operator signs on a sender's behalf: a CMS any verifier reads (asn1crypto here)."""
    from asn1crypto import cms

    op = _key(tmp_path)
    der = op.sign_document(b"document bytes")
    info = cms.ContentInfo.load(der)
    sd = info["content"]
    assert info["content_type"].native == "signed_data"
    assert sd["encap_content_info"]["content"].native is None  # detached
    signer_cert = x509.load_der_x509_certificate(sd["certificates"][0].chosen.dump())
    assert signer_cert == op.cert
