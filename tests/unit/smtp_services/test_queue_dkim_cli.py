"""``esam queue list|show|retry|delete`` and ``esam dkim keygen|dns``, run in-process."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import dkim
import pytest

from esam_mail import config
from esam_mail.cli import main
from esam_mail.services.mailflow.dkim import DkimSigner
from esam_mail.store.spool import Spool

MSG = b"From: alice@esam.test\r\nTo: x@other.test\r\nSubject: queued\r\n\r\nbody text\r\n"


@pytest.fixture
def spool(cfg: config.Config) -> Spool:
    return Spool(cfg.data_dir / "queue", fsync=False)


def run(config_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    umask = os.umask(0o022)  # main() sets the process umask; don't leak it to later tests
    os.umask(umask)
    try:
        rc = main(["-c", str(config_path), *args])
    finally:
        os.umask(umask)
    out, errs = capsys.readouterr()
    return rc, out, errs


def test_list_empty_then_entries(config_path: Path, spool: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_path, capsys, "queue", "list") == (0, "queue is empty\n", "")
    a = spool.enqueue("alice@esam.test", ["x@other.test", "y@other.test"], MSG)
    e = spool.get(a)
    e.rcpts[0].status = "delivered"
    e.rcpts[1].reply = "451 4.3.0 try later"
    e.attempts = 2
    spool.update(e)
    rc, out, _ = run(config_path, capsys, "queue", "list")
    assert rc == 0
    assert a in out and "<alice@esam.test>" in out and "1/2 pending" in out and "451 4.3.0 try later" in out
    rc, out, _ = run(config_path, capsys, "queue", "list", "--json")
    [d] = json.loads(out)
    assert d["id"] == a and d["attempts"] == 2
    assert [r["status"] for r in d["recipients"]] == ["delivered", "pending"]


def test_show(config_path: Path, spool: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    a = spool.enqueue("alice@esam.test", ["x@other.test"], MSG)
    rc, out, _ = run(config_path, capsys, "queue", "show", a)
    assert rc == 0 and "Subject: queued" in out and "body text" not in out and "<x@other.test>  pending" in out
    rc, out, _ = run(config_path, capsys, "queue", "show", a, "--body")
    assert "body text" in out
    rc, out, _ = run(config_path, capsys, "queue", "show", a, "--json")
    assert json.loads(out)["message"].startswith("From: alice@esam.test")
    rc, _, errs = run(config_path, capsys, "queue", "show", "0000000000000000ffffffffffff")
    assert rc == 3 and "not found" in errs
    rc, _, errs = run(config_path, capsys, "queue", "show", "../../etc/passwd")
    assert rc == 3


def test_retry_makes_due_and_wakes_runners(cfg: config.Config, config_path: Path, spool: Spool,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from esam_mail.app import notify_dir
    from esam_mail.services.mailflow.queue import QUEUE_KICK
    from esam_mail.store.notify import UnixDatagramNotifier

    a = spool.enqueue("alice@esam.test", ["x@other.test"], MSG)
    e = spool.get(a)
    e.next_attempt = time.time() + 3600
    spool.update(e)
    got: list[tuple[str, str]] = []
    woke = threading.Event()
    listener = UnixDatagramNotifier(notify_dir(cfg))  # stands in for a server process

    def on_change(login: str, folder: str) -> None:
        got.append((login, folder))
        woke.set()

    listener.subscribe(on_change)
    try:
        before = time.time()
        rc, out, _ = run(config_path, capsys, "queue", "retry", a)
        assert rc == 0 and f"{a}: scheduled now" in out
        assert before <= spool.get(a).next_attempt <= time.time()
        assert woke.wait(10)
        assert got == [QUEUE_KICK]
    finally:
        listener.close()


def test_retry_all_busy_and_unknown(config_path: Path, spool: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    a = spool.enqueue("alice@esam.test", ["x@other.test"], MSG)
    b = spool.enqueue("alice@esam.test", ["y@other.test"], MSG)
    rc, _, errs = run(config_path, capsys, "queue", "retry")
    assert rc == 2 and "--all" in errs
    claim = spool.claim(b)  # a runner is delivering b right now
    assert claim is not None
    try:
        rc, out, _ = run(config_path, capsys, "queue", "retry", "--all")
        assert rc == 75 and f"{a}: scheduled now" in out and f"{b}: being delivered right now" in out
    finally:
        claim.release()
    rc, _, errs = run(config_path, capsys, "queue", "retry", "0000000000000000ffffffffffff")
    assert rc == 3 and "not found" in errs


def test_delete_is_audited(config_path: Path, spool: Spool, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_path, capsys, "init")[0] == 0
    a = spool.enqueue("alice@esam.test", ["x@other.test"], MSG)
    rc, out, _ = run(config_path, capsys, "queue", "delete", a)
    assert rc == 0 and f"{a}: deleted" in out
    assert spool.ids() == []
    rc, _, errs = run(config_path, capsys, "queue", "delete", a)
    assert rc == 3 and "not found" in errs
    rc, out, _ = run(config_path, capsys, "audit", "list", "--action", "queue.*", "--json")
    [ev] = json.loads(out)
    assert ev["target"] == a and ev["detail"]["rcpts"] == ["x@other.test"]


def test_delete_refuses_an_entry_being_delivered(config_path: Path, spool: Spool,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a = spool.enqueue("alice@esam.test", ["x@other.test"], MSG)
    claim = spool.claim(a)
    assert claim is not None
    try:
        rc, out, _ = run(config_path, capsys, "queue", "delete", a)
    finally:
        claim.release()
    assert rc == 75 and "being delivered" in out and spool.ids() == [a]


def txt_from_zone(out: str) -> tuple[str, str]:
    m = re.fullmatch(r'(\S+)\. IN TXT \( (.+) \)\n', out)
    assert m, out
    parts = re.findall(r'"([^"]*)"', m.group(2))
    assert all(len(p) <= 255 for p in parts)
    return m.group(1), "".join(parts)


@pytest.mark.parametrize(("flag", "algorithm", "k"), [("rsa", "rsa-sha256", "rsa"),
                                                      ("ed25519", "ed25519-sha256", "ed25519")])
def test_keygen_prints_a_record_that_verifies(cfg: config.Config, config_path: Path, flag: str, algorithm: str,
                                              k: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, errs = run(config_path, capsys, "dkim", "keygen", "--selector", "s2026", "--algorithm", flag)
    assert rc == 0, errs
    name, value = txt_from_zone(out)
    assert name == "s2026._domainkey.esam.test"
    assert value.startswith(f"v=DKIM1; k={k}; p=")
    assert "[dkim] keys" in errs  # s2026 is not configured yet
    key_file = cfg.data_dir / "dkim" / f"s2026.{k}.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    signed = DkimSigner("esam.test", [("s2026", algorithm, key_file.read_bytes())]).sign(MSG)

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes:
        return value.encode() if qname == b"s2026._domainkey.esam.test." else b""

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    # never overwritten
    before = key_file.read_bytes()
    rc, _, errs = run(config_path, capsys, "dkim", "keygen", "--selector", "s2026", "--algorithm", flag)
    assert rc == 1 and "exists already" in errs and key_file.read_bytes() == before


def test_keygen_rejects_bad_selector(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, errs = run(config_path, capsys, "dkim", "keygen", "--selector", "../x")
    assert rc == 2 and "selector" in errs


def test_dns_lists_configured_keys(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, errs = run(config_path, capsys, "dkim", "dns")
    assert rc == 1 and "esam-rsa" in errs  # nothing made yet
    assert run(config_path, capsys, "init")[0] == 0
    rc, out, _ = run(config_path, capsys, "dkim", "dns", "--json")
    rows: list[dict[str, Any]] = json.loads(out)
    assert rc == 0 and {r["selector"] for r in rows} == {"esam-rsa", "esam-ed"}
    assert {r["txt"].split(";")[1].strip() for r in rows} == {"k=rsa", "k=ed25519"}
