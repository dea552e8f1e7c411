"""DKIM: generated keys sign, dkimpy verifies through an injected DNS."""

from __future__ import annotations

import os
import re
import stat

import dkim
import pytest

from esam_mail.services.mailflow.dkim import DkimSigner, dns_name, dns_record, generate_key, txt_chunks

MSG = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@other.test\r\n"
    b"Subject: hello\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"Received: from somewhere\r\n"
    b"\r\n"
    b"body line\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkim")
    rsa_path, rsa_txt = generate_key(d, "r2026", "rsa-sha256")
    ed_path, ed_txt = generate_key(d, "e2026", "ed25519-sha256")
    return {"rsa": (rsa_path, rsa_txt), "ed": (ed_path, ed_txt)}


def dnsfunc_for(records):
    def f(name, timeout=5):
        return records.get(name.decode().rstrip(".")) and records[name.decode().rstrip(".")].encode()

    return f


def signer(keys):
    return DkimSigner.from_files(
        "example.com",
        [("e2026", "ed25519-sha256", keys["ed"][0]), ("r2026", "rsa-sha256", keys["rsa"][0])],
    )


def test_generate_key_formats_and_permissions(keys):
    rsa_path, rsa_txt = keys["rsa"]
    ed_path, ed_txt = keys["ed"]
    assert stat.S_IMODE(os.stat(rsa_path).st_mode) == 0o600
    with open(rsa_path, "rb") as f:
        rsa_pem = f.read()
    with open(ed_path, "rb") as f:
        ed_key = f.read()
    assert rsa_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1
    assert rsa_txt.startswith("v=DKIM1; k=rsa; p=MII")
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", ed_txt)
    assert dns_record(ed_key, "ed25519-sha256") == ed_txt
    assert dns_record(rsa_pem, "rsa-sha256") == rsa_txt
    assert "".join(txt_chunks(rsa_txt)) == rsa_txt
    assert all(len(c) <= 255 for c in txt_chunks(rsa_txt))


def test_generate_key_refuses_overwrite_and_bad_input(keys, tmp_path):
    generate_key(tmp_path, "s1", "ed25519-sha256")
    with pytest.raises(FileExistsError):
        generate_key(tmp_path, "s1", "ed25519-sha256")
    with pytest.raises(ValueError):
        generate_key(tmp_path, "../x", "ed25519-sha256")
    with pytest.raises(ValueError):
        generate_key(tmp_path, "s2", "rsa-sha1")


def test_dual_sign_both_verify(keys):
    s = signer(keys)
    signed = s.sign(MSG)
    records = s.dns_records()
    assert set(records) == {dns_name("r2026", "example.com"), dns_name("e2026", "example.com")}
    f = dnsfunc_for(records)
    sigs = [v for n, v in dkim.rfc822_parse(signed)[0] if n.lower() == b"dkim-signature"]
    assert len(sigs) == 2
    assert b"a=ed25519-sha256" in sigs[0] and b"a=rsa-sha256" in sigs[1]
    for idx in (0, 1):
        d = dkim.DKIM(signed)
        assert d.verify(idx=idx, dnsfunc=f) is True
    assert dkim.verify(signed, dnsfunc=f)


def test_header_list_oversigns_present_headers_only(keys):
    s = signer(keys)
    h = [x.decode() for x in s.header_list(MSG)]
    assert h.count("from") == 2 and h.count("subject") == 2 and h.count("message-id") == 2
    assert "cc" not in h and "received" not in h and "list-unsubscribe" not in h
    tags = dkim.util.parse_tag_value(s.signatures(MSG)[0].split(b":", 1)[1])
    assert tags[b"c"] == b"relaxed/relaxed"
    assert re.sub(rb"\s", b"", tags[b"h"]).split(b":").count(b"to") == 2


@pytest.mark.parametrize("idx", [0, 1])
def test_tampering_fails(keys, idx):
    s = signer(keys)
    f = dnsfunc_for(s.dns_records())
    signed = s.sign(MSG)
    body_changed = signed.replace(b"body line", b"body lime")
    subject_changed = signed.replace(b"Subject: hello", b"Subject: hellO")
    added_to = b"To: mallory@evil.test\r\n" + signed
    for bad in (body_changed, subject_changed, added_to):
        try:
            ok = dkim.DKIM(bad).verify(idx=idx, dnsfunc=f)
        except dkim.ValidationError:
            ok = False
        assert not ok


def test_from_header_required(keys):
    with pytest.raises(ValueError):
        signer(keys).sign(b"To: x@y.test\r\n\r\nbody\r\n")


def test_signer_validates_keys():
    with pytest.raises(ValueError):
        DkimSigner("example.com", [])
    with pytest.raises(ValueError):
        DkimSigner("example.com", [("s", "rsa-sha1", b"")])
