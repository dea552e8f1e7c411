"""MX end of DATA: Received, Authentication-Results (RFC 8601) and DMARC p=reject,
with the server's DNS replaced by a dict-backed resolver (``Server(resolver=...)``)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esam_mail.services.mailflow.dkim import DkimSigner, generate_key
from esam_mail.services.mailflow.inbound_auth import StaticResolver
from esam_mail.smtp import codes
from tests.conftest import write_config
from tests.protocol.harness import Running

pytestmark = pytest.mark.protocol

MSG = (
    b"From: Bob <bob@other.test>\r\nTo: alice@esam.test\r\nSubject: signed\r\n"
    b"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\nMessage-ID: <auth-1@other.test>\r\n\r\nHello Alice\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, str]]:
    """Two RSA keys of other.test: 'good' is published in the fake DNS, 'rogue' is not."""
    d = tmp_path_factory.mktemp("dkim")
    out = {}
    for name in ("good", "rogue"):
        path, record = generate_key(d, name, "rsa-sha256")
        out[name] = (Path(path).read_bytes(), record)
    return out


def resolver(keys: dict[str, tuple[bytes, str]], spf: str) -> StaticResolver:
    return StaticResolver(txt={
        "other.test": [spf],
        "_dmarc.other.test": ["v=DMARC1; p=reject; adkim=r; aspf=r"],
        "good._domainkey.other.test": [keys["good"][1]],
        # "rogue" signs with selector "good" below, so its signature meets the good key
    })


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    from esam_mail import config

    started: list[Running] = []

    def make_server(res: StaticResolver, *, dmarc_reject: bool = True) -> Running:
        cfg = config.load(write_config(tmp_path, inbound={"verify": True, "dmarc_reject": dmarc_reject}))
        r = Running(cfg, resolver=res)
        started.append(r)
        r.add_mailbox("alice")
        return r

    yield make_server
    for r in started:
        r.stop()


def sign(key: bytes, message: bytes = MSG) -> bytes:
    return DkimSigner("other.test", [("good", "rsa-sha256", key)]).sign(message)


def send(r: Running, data: bytes) -> tuple[int, bytes]:
    s = smtplib.SMTP("127.0.0.1", r.ports["smtp"], timeout=20)
    s.ehlo("mta.other.test")
    s.mail("bob@other.test")
    code, text = s.rcpt("alice@esam.test")
    assert code == 250, text
    try:
        return s.data(data)
    finally:
        s.quit()


def stored(r: Running) -> list[bytes]:
    root = r.cfg.store_path / "alice"
    return [p.read_bytes() for p in sorted((root / "new").iterdir())]


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_pass_is_recorded_after_received(make: Any, keys: dict[str, tuple[bytes, str]]) -> None:
    res = resolver(keys, "v=spf1 ip4:127.0.0.1 -all")
    r = make(res)
    code, text = send(r, sign(keys["good"][0]))
    assert code == 250, text
    [raw] = stored(r)
    head = header_block(raw).decode()
    lines = head.split("\r\n")
    assert lines[0] == "Return-Path: <bob@other.test>"
    assert lines[1].startswith("Received: from mta.other.test ([127.0.0.1])")
    ar_at = next(i for i, line in enumerate(lines) if line.startswith("Authentication-Results:"))
    assert all(not line.startswith(("DKIM-Signature", "From:")) for line in lines[:ar_at])
    ar = head[head.index("Authentication-Results:"):].split("\r\nDKIM-Signature", 1)[0]
    assert ar.startswith("Authentication-Results: mx.esam.test;")
    assert "spf=pass smtp.mailfrom=bob@other.test" in ar
    assert "dkim=pass header.d=other.test header.s=good" in ar
    assert "dmarc=pass (p=reject dis=NONE) header.from=other.test" in ar
    assert ("txt", "good._domainkey.other.test") in res.queries  # DNS went through our resolver


def test_dmarc_reject_refused_at_end_of_data(make: Any, keys: dict[str, tuple[bytes, str]]) -> None:
    r = make(resolver(keys, "v=spf1 ip4:192.0.2.1 -all"))  # SPF fails too
    code, text = send(r, sign(keys["rogue"][0]))  # signed with a key not in DNS
    assert f"{code} {text.decode()}".startswith(codes.R550_DMARC_REJECT), text
    assert b"DMARC" in text and b"(session " in text
    assert stored(r) == []


def test_unsigned_and_spf_fail_is_refused(make: Any, keys: dict[str, tuple[bytes, str]]) -> None:
    r = make(resolver(keys, "v=spf1 ip4:192.0.2.1 -all"))
    code, text = send(r, MSG)
    assert code == 550 and text.startswith(b"5.7.1")
    assert stored(r) == []


def test_spf_alone_aligns_and_passes(make: Any, keys: dict[str, tuple[bytes, str]]) -> None:
    r = make(resolver(keys, "v=spf1 ip4:127.0.0.0/8 -all"))
    code, _ = send(r, sign(keys["rogue"][0]))
    assert code == 250
    head = header_block(stored(r)[0])
    assert b"spf=pass" in head and b"dkim=fail" in head and b"dmarc=pass" in head


def test_reject_policy_can_be_turned_off(make: Any, keys: dict[str, tuple[bytes, str]]) -> None:
    r = make(resolver(keys, "v=spf1 ip4:192.0.2.1 -all"), dmarc_reject=False)
    code, _ = send(r, sign(keys["rogue"][0]))
    assert code == 250
    head = header_block(stored(r)[0])
    assert b"dmarc=fail (p=reject dis=REJECT)" in head and b"spf=fail" in head


def test_forged_results_with_our_authserv_id_are_removed(make: Any, keys: dict[str, tuple[bytes, str]]) -> None:
    r = make(resolver(keys, "v=spf1 ip4:127.0.0.1 -all"))
    forged = b"Authentication-Results: mx.esam.test; dkim=pass header.d=bank.test\r\n\tdmarc=pass\r\n" + MSG
    code, _ = send(r, forged)
    assert code == 250
    head = header_block(stored(r)[0])
    assert head.count(b"Authentication-Results: mx.esam.test") == 1
    assert b"bank.test" not in head


def test_mx_without_verification_adds_no_results(running: Running) -> None:
    running.add_mailbox("alice")
    code, _ = send(running, MSG)
    assert code == 250
    head = header_block(stored(running)[0])
    assert b"Authentication-Results" not in head and head.count(b"Received: ") == 1
