"""Crash safety (R11): ``esam serve`` is SIGKILLed in the middle of work and restarted.

* SMTP: 2,000 messages over 8 connections to 4 mailboxes, SIGKILL after about half
  were acknowledged.  Every message that got a 250 is in its recipient's INBOX
  exactly once with its complete body; nothing partial is visible over IMAP or in
  ``new/``/``cur/``; UIDs are unique, UIDs seen before the kill still name the same
  message, UIDVALIDITY is unchanged; the outbound queue entry made before the kill
  reaches a sink that only comes up after the restart.
* IMAP: SIGKILL while a large APPEND literal is in flight and a MOVE of 1,500
  messages runs, then while an EXPUNGE of 1,500 messages runs: afterwards each
  message is in exactly one folder, once, with stable UIDs.
* Registration: ``esam register individual`` killed after its Maildir appeared but
  before its transaction committed: no half-registered subscriber, application or
  mailbox row, and the same registration then succeeds.
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import json
import os
import re
import shutil
import signal
import smtplib
import sqlite3
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ESAM, EsamProcess
from tests.ports import free_port
from tests.rawclient import RawIMAP, open_socket

# one worker runs the module (--dist loadgroup): its module-scoped `esam` is made once
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_crash")]

PASSWORD = "Crash-Test-Passw0rd"
USERS = ("u0", "u1", "u2", "u3")
TOTAL, CONNS = 2000, 8
ID_RE = re.compile(rb"^X-Test-Id: (\S+)\r?$", re.M)


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder made once by ``esam init`` (schema, keys, certificate)."""
    template = EsamProcess(tmp_path_factory.mktemp("template"))
    template.esam("init")
    template.add_staff("e-1")
    return template.data


def fresh(make_esam: Any, initialized: Path, **sections: dict[str, Any]) -> EsamProcess:
    """An EsamProcess with its own copy of the initialized data folder."""
    esam: EsamProcess = make_esam(**sections)
    shutil.copytree(initialized, esam.data, symlinks=True)
    return esam


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def body_of(mid: str) -> bytes:
    """The exact body of test message ``mid``; its last line is the end marker."""
    return (f"id {mid}\r\n" + "".join(f"line {i:03d} {'x' * 60}\r\n" for i in range(25))
            + f"END-{mid}\r\n").encode()


def message(mid: str, rcpt: str, frm: str = "sender@ext.test") -> bytes:
    return (f"From: {frm}\r\nTo: {rcpt}\r\nSubject: crash {mid}\r\nX-Test-Id: {mid}\r\n"
            f"Message-ID: <{mid}@ext.test>\r\n\r\n").encode() + body_of(mid)


def check_complete(raw: bytes) -> str:
    """The test id of a stored message, after checking that its body is complete."""
    m = ID_RE.search(raw.split(b"\r\n\r\n", 1)[0].replace(b"\n", b"\r\n").replace(b"\r\r", b"\r"))
    assert m, raw[:300]
    mid = m.group(1).decode()
    parsed = email.message_from_bytes(raw)
    assert parsed["X-Test-Id"] == mid
    assert raw.split(b"\r\n\r\n", 1)[1] == body_of(mid), f"partial or altered body of {mid}"
    return mid


def add_mailboxes(esam: EsamProcess, logins: tuple[str, ...]) -> None:
    """Create mailboxes directly in the directory and the store (``esam mailbox add``
    costs a Python start per mailbox)."""
    from esam_mail import config
    from esam_mail.directory.passwords import PasswordHasher
    from esam_mail.directory.sql import SqlDirectory
    from esam_mail.store.maildir import MaildirStore

    cfg = config.load(esam.config)

    async def go() -> None:
        directory = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        hasher = PasswordHasher(cfg.auth.argon2_memory_kib, cfg.auth.argon2_time_cost,
                                cfg.auth.argon2_parallelism)
        store = MaildirStore(cfg.store_path, fsync=False)
        try:
            for login in logins:
                rec = await directory.create_mailbox(login, hasher.hash(PASSWORD))
                store.user(rec.login_norm).create()
        finally:
            await directory.close()

    old = os.umask(0o077)
    try:
        asyncio.run(go())
    finally:
        os.umask(old)


def imaps(esam: EsamProcess, user: str) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=str(esam.cert))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", esam.ports["imaps"], ssl_context=ctx, timeout=30)
    m.login(user, PASSWORD)
    return m


def status(m: imaplib.IMAP4_SSL, folder: str) -> dict[str, int]:
    typ, data = m.status(folder, "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert typ == "OK", data
    pairs = re.findall(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", data[0])
    return {k.decode(): int(v) for k, v in pairs}


def uid_map(m: imaplib.IMAP4_SSL, folder: str, *, full: bool = True) -> dict[int, str]:
    """UID -> test id of every message in ``folder`` (full bodies checked when ``full``)."""
    typ, data = m.select(folder, readonly=True)
    assert typ == "OK", data
    if int(data[0]) == 0:
        return {}
    item = "BODY.PEEK[]" if full else "BODY.PEEK[HEADER.FIELDS (X-Test-Id)]"
    typ, data = m.uid("FETCH", "1:*", f"(UID {item})")
    assert typ == "OK", data
    out: dict[int, str] = {}
    uids: list[int] = []
    for part in data:
        if not isinstance(part, tuple):
            continue
        uid = int(re.search(rb"UID (\d+)", part[0]).group(1))  # type: ignore[union-attr]
        uids.append(uid)
        if full:
            out[uid] = check_complete(part[1])
        else:
            hit = ID_RE.search(part[1])
            assert hit, part
            out[uid] = hit.group(1).decode()
    assert len(uids) == len(set(uids)), "duplicate UIDs in one folder"
    return out


def maildir_files(user_dir: Path) -> list[Path]:
    """Every message file a reader could see: new/ and cur/ of every folder."""
    out: list[Path] = []
    for folder in [user_dir, *(p for p in user_dir.iterdir() if p.name.startswith("."))]:
        for sub in ("new", "cur"):
            d = folder / sub
            if d.is_dir():
                out.extend(p for p in d.iterdir() if p.is_file())
    return out


def assert_no_partial_files(esam: EsamProcess, users: tuple[str, ...]) -> None:
    for u in users:
        for path in maildir_files(esam.data / "mail" / u):
            data = path.read_bytes()
            assert data.endswith(b"\r\n") and re.search(rb"END-\S+\r\n$", data), f"partial file {path}"


class Sink:
    """An aiosmtpd sink on a fixed port that records what it receives."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[tuple[str, list[str], bytes]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                return "250 2.0.0 Ok"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


# -- SMTP ------------------------------------------------------------------------------


class Blaster:
    """8 threads, each one SMTP connection, sending their share of ids."""

    def __init__(self, port: int, ids: list[tuple[str, str]]) -> None:
        self.port = port
        self.ids = ids
        self.acked: list[str] = []
        self.doubt: list[str] = []  # DATA sent, no reply seen: may or may not be stored
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(CONNS)]

    def _run(self, k: int) -> None:
        mine = self.ids[k::CONNS]
        try:
            client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
            client.ehlo("blaster.ext.test")
        except OSError:
            return
        for mid, rcpt in mine:
            try:
                client.sendmail("sender@ext.test", [rcpt], message(mid, rcpt))
            except (smtplib.SMTPException, OSError):
                with self.lock:
                    self.doubt.append(mid)
                return
            with self.lock:
                self.acked.append(mid)
        with _suppress():
            client.quit()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float = 60) -> None:
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "an SMTP client thread hangs"


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def test_sigkill_during_smtp_blast_loses_nothing_acknowledged(make_esam: Any, initialized: Path) -> None:
    sink_port = free_port()
    esam = fresh(make_esam, initialized,
                 outbound={"transport": {"remote.test": f"127.0.0.1:{sink_port}"}, "retry_base": 1,
                           "retry_max": 2})
    add_mailboxes(esam, USERS)
    esam.start()

    before: dict[str, dict[str, int]] = {}
    for u in USERS:
        c = imaps(esam, u)
        before[u] = status(c, "INBOX")
        c.logout()

    # an outbound message for a remote domain whose next hop is down
    ctx = ssl.create_default_context(cafile=str(esam.cert))
    ctx.check_hostname = False
    with smtplib.SMTP_SSL("127.0.0.1", esam.ports["submissions"], context=ctx, timeout=30) as sub:
        sub.login("u0", PASSWORD)
        sub.sendmail("u0@esam.test", ["far@remote.test"],
                     b"From: u0@esam.test\r\nTo: far@remote.test\r\nSubject: queued\r\n\r\nOUTBOUND-MARK\r\n")

    ids = [(f"m{i:04d}", f"{USERS[(i // CONNS) % len(USERS)]}@esam.test") for i in range(TOTAL)]
    rcpt_of = dict(ids)
    blast = Blaster(esam.ports["smtp"], ids)
    blast.start()
    # UIDs handed out before the kill must still name the same messages afterwards
    wait_until(lambda: len(blast.acked) >= TOTAL // 4, 60, "a quarter of the messages")
    snap_client = imaps(esam, "u1")
    snapshot = uid_map(snap_client, "INBOX", full=False)
    snap_client.logout()
    assert snapshot
    wait_until(lambda: len(blast.acked) >= TOTAL // 2, 60, "half of the messages", step=0.005)
    esam.stop(signal.SIGKILL)
    blast.join()
    acked_before, doubt = set(blast.acked), set(blast.doubt)
    assert TOTAL // 2 <= len(acked_before) < TOTAL, len(acked_before)

    sink = Sink(sink_port)
    esam.start()
    sink.start()
    try:
        # the client side of a real MTA: resend what was in doubt (and a few never sent)
        unsent = [(mid, rcpt) for mid, rcpt in ids if mid not in acked_before and mid not in doubt]
        rest = [(mid, rcpt) for mid, rcpt in ids if mid in doubt] + unsent[:100]
        resent = {mid for mid, _ in rest}
        again = Blaster(esam.ports["smtp"], rest)
        again.start()
        again.join()
        assert not again.doubt and sorted(again.acked) == sorted(mid for mid, _ in rest)

        seen: Counter[str] = Counter()
        for u in USERS:
            c = imaps(esam, u)
            after = status(c, "INBOX")
            assert after["UIDVALIDITY"] == before[u]["UIDVALIDITY"]
            contents = uid_map(c, "INBOX")
            assert after["UIDNEXT"] > max(contents)
            if u == "u1":
                for uid, mid in snapshot.items():
                    assert contents.get(uid) == mid, f"UID {uid} changed meaning after the restart"
            for mid in contents.values():
                assert rcpt_of[mid] == f"{u}@esam.test", f"{mid} in the wrong mailbox"
                seen[mid] += 1
            c.logout()
        for mid, _ in ids:
            if mid in doubt:
                assert 1 <= seen[mid] <= 2, (mid, seen[mid])  # SMTP is at-least-once here
            elif mid in acked_before or mid in resent:
                assert seen[mid] == 1, (mid, seen[mid])
            else:
                assert seen[mid] == 0, (mid, seen[mid])
        assert_no_partial_files(esam, USERS)

        wait_until(lambda: any(b"OUTBOUND-MARK" in d for _, _, d in sink.received), 30,
                   "the queued message at the sink")
        assert [r for _, r, d in sink.received if b"OUTBOUND-MARK" in d] == [["far@remote.test"]]
    finally:
        sink.stop()


# -- IMAP ------------------------------------------------------------------------------


class Raw(RawIMAP):
    """The shared IMAP line client over IMAPS, logged in as u0, for commands whose reply we
    do not wait for."""

    def __init__(self, esam: EsamProcess) -> None:
        ctx = ssl.create_default_context(cafile=str(esam.cert))
        ctx.check_hostname = False
        super().__init__(open_socket(esam.ports["imaps"], tls=ctx, timeout=30), timeout=30)
        self.cmd(b"l", b'LOGIN u0 "' + PASSWORD.encode() + b'"')

    def cmd(self, tag: bytes, text: bytes) -> bytes:
        line = self.tagged(tag, text)[-1]
        assert line.startswith(tag + b" OK"), line
        return line


def preload(esam: EsamProcess, folder: str, prefix: str, n: int) -> list[str]:
    """Deliver ``n`` messages to u0's ``folder`` directly through the store."""
    from esam_mail import config
    from esam_mail.store.maildir import MaildirStore

    cfg = config.load(esam.config)
    old = os.umask(0o077)
    try:
        user = MaildirStore(cfg.store_path, fsync=False).user("u0")
        mids = [f"{prefix}{i:04d}" for i in range(n)]
        for mid in mids:
            user.deliver(message(mid, "u0@esam.test"), folder)
    finally:
        os.umask(old)
    return mids


def folder_dir(esam: EsamProcess, folder: str) -> Path:
    root = esam.data / "mail" / "u0"
    return root if folder == "INBOX" else root / f".{folder}"


def count_files(esam: EsamProcess, folder: str) -> int:
    d = folder_dir(esam, folder)
    return len(os.listdir(d / "cur")) + len(os.listdir(d / "new"))


def test_sigkill_during_append_move_and_expunge_keeps_folders_consistent(make_esam: Any,
                                                                        initialized: Path) -> None:
    n = 1500
    esam = fresh(make_esam, initialized)
    add_mailboxes(esam, ("u0",))
    inbox_ids = preload(esam, "INBOX", "i", n)
    junk_ids = preload(esam, "Junk", "j", n)
    esam.start()

    m = imaps(esam, "u0")
    validity = {f: status(m, f)["UIDVALIDITY"] for f in ("INBOX", "Archive", "Junk")}
    inbox_before = uid_map(m, "INBOX", full=False)
    junk_before = uid_map(m, "Junk", full=False)
    m.logout()

    # round 1: a 4 MB APPEND literal half sent, and a MOVE of every INBOX message
    appender, mover = Raw(esam), Raw(esam)
    appender.sock.sendall(b"a APPEND INBOX {4000000}\r\n")
    assert appender.line().startswith(b"+")
    appender.sock.sendall(b"From: x@ext.test\r\nX-Test-Id: partial\r\n\r\n" + b"y" * 2_000_000)
    mover.cmd(b"s", b"SELECT INBOX")
    mover.sock.sendall(b"m UID MOVE 1:* Archive\r\n")
    wait_until(lambda: count_files(esam, "Archive") > 0, 30, "the MOVE to start", step=0.0005)
    at_kill = (count_files(esam, "INBOX"), count_files(esam, "Archive"))
    esam.stop(signal.SIGKILL)
    appender.close()
    mover.close()

    esam.start()
    m = imaps(esam, "u0")
    assert {f: status(m, f)["UIDVALIDITY"] for f in validity} == validity
    inbox, archive = uid_map(m, "INBOX"), uid_map(m, "Archive")
    everywhere = Counter([*inbox.values(), *archive.values()])
    assert everywhere == Counter(inbox_ids), (
        f"after SIGKILL mid-MOVE (files INBOX/Archive at kill: {at_kill}): "
        f"{sum(1 for v in everywhere.values() if v > 1)} messages in two folders, "
        f"{len(set(inbox_ids) - set(everywhere))} lost"
    )
    for uid, mid in inbox.items():
        assert inbox_before[uid] == mid  # what stayed kept its UID
    m.logout()

    # round 2: EXPUNGE of 1,500 \Deleted messages
    expunger = Raw(esam)
    expunger.cmd(b"s", b"SELECT Junk")
    expunger.cmd(b"f", b"STORE 1:* +FLAGS.SILENT (\\Deleted)")
    expunger.sock.sendall(b"e EXPUNGE\r\n")
    wait_until(lambda: count_files(esam, "Junk") < n, 30, "the EXPUNGE to start", step=0.0005)
    esam.stop(signal.SIGKILL)
    expunger.close()

    esam.start()
    m = imaps(esam, "u0")
    assert {f: status(m, f)["UIDVALIDITY"] for f in validity} == validity
    junk = uid_map(m, "Junk")
    assert set(junk.values()) <= set(junk_ids) and len(set(junk.values())) == len(junk)
    for uid, mid in junk.items():
        assert junk_before[uid] == mid
    m.select("Junk")
    assert m.expunge()[0] == "OK"  # finishing the interrupted EXPUNGE works
    assert status(m, "Junk")["MESSAGES"] == 0
    assert_no_partial_files(esam, ("u0",))
    m.logout()


# -- registration ----------------------------------------------------------------------


def _register_args(esam: EsamProcess, iin: str, username: str) -> list[str]:
    return [
        *ESAM, "-c", str(esam.config), "register", "individual", "--surname", "Ахметова",
        "--given-name", "Әсем", "--iin", iin, "--doc-type", "id_card", "--doc-number", "041234567",
        "--doc-issuer", "МВД РК", "--doc-issue-date", "2018-03-01", "--region", "Алматинская область",
        "--locality", "Қонаев", "--street", "ул. Абая", "--house", "12", "--postcode", "B01P3K4",
        "--mobile-phone", "+7 701 123 45 67", "--username", username, "--office", "ALA01",
        "--employee", "e-1", "--accept-agreement", "2026-1", "--password-stdin", "--json",
    ]  # fmt: skip


def _rows(db: Path, iin: str, login: str) -> tuple[int, int, int]:
    with sqlite3.connect(db) as con:
        subs = [r[0] for r in con.execute("SELECT id FROM subscribers WHERE iin = ?", (iin,))]
        marks = ",".join("?" * len(subs)) or "NULL"
        apps = con.execute(f"SELECT count(*) FROM applications WHERE subscriber_id IN ({marks})",
                           subs).fetchone()[0]
        boxes = con.execute("SELECT count(*) FROM mailboxes WHERE login_norm = ?", (login,)).fetchone()[0]
    return len(subs), apps, boxes


def test_sigkill_during_registration_leaves_nothing_half_done(make_esam: Any, initialized: Path) -> None:
    from tests.unit.registration.workers import distinct_iins

    esam = fresh(make_esam, initialized)
    db = esam.data / "directory.db"
    iin = distinct_iins(1)[0]
    login = "crash.reg"
    proc = subprocess.Popen(_register_args(esam, iin, login), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(b"correct horse battery\n")
    proc.stdin.close()
    # the Maildir is made inside the open transaction, just before COMMIT
    wait_until(lambda: (esam.data / "mail" / login).exists() or proc.poll() is not None, 60,
               "the registration's Maildir", step=0.0002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed_mid_way = proc.returncode == -signal.SIGKILL
    assert _rows(db, iin, login) in ((0, 0, 0), (1, 1, 1)), _rows(db, iin, login)
    with sqlite3.connect(db) as con:
        orphans = con.execute(
            "SELECT count(*) FROM applications WHERE subscriber_id NOT IN (SELECT id FROM subscribers)"
        ).fetchone()[0]
        boxless = con.execute(
            "SELECT count(*) FROM subscribers WHERE id NOT IN "
            "(SELECT subscriber_id FROM mailboxes WHERE subscriber_id IS NOT NULL)"
        ).fetchone()[0]
    assert orphans == 0 and boxless == 0

    if _rows(db, iin, login) == (0, 0, 0):
        # nothing was registered: the applicant can simply be registered again
        res = subprocess.run(_register_args(esam, iin, login), input=b"correct horse battery\n",
                             capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr.decode()
        assert json.loads(res.stdout)["address"] == f"{login}@esam.test"
    assert _rows(db, iin, login) == (1, 1, 1)
    assert (esam.data / "mail" / login / "cur").is_dir()
    assert killed_mid_way or proc.returncode == 0
