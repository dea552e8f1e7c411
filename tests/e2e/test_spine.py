"""The mail path end to end: `esam serve` as a subprocess, real third-party clients.

swaks delivers to the MX, msmtp submits with AUTH over STARTTLS, imaplib (IMAPS) and
mutt read, mbsync copies the mailbox to a local Maildir.  Bodies read back over IMAP
are byte-identical to what was sent.
"""

from __future__ import annotations

import imaplib
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import EsamProcess, tool

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-Passw0rd"


def imaps(esam: EsamProcess, user: str = "alice", password: str = PASSWORD) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context(cafile=str(esam.cert))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", esam.ports["imaps"], ssl_context=ctx, timeout=20)
    m.login(user, password)
    return m


def wait_for(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def fetch_bodies(m: imaplib.IMAP4_SSL) -> list[bytes]:
    m.select("INBOX")
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK"
    bodies = []
    for uid in data[0].split():
        typ, parts = m.uid("FETCH", uid, "(BODY.PEEK[])")
        assert typ == "OK"
        bodies.append(parts[0][1])
    return bodies


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def test_swaks_to_mx_then_imaps_reads_identical(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_mailbox("alice", PASSWORD)
    body = "Hello Alice.\r\nСәлем! Привет.\r\n.leading dot\r\nend\r\n"
    msg = tmp_path / "msg.eml"
    msg.write_bytes(
        b"From: bob@other.test\r\nTo: alice@esam.test\r\nSubject: e2e\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.encode()[:-2]
    )  # swaks itself ends the data with CRLF "." CRLF
    res = subprocess.run(
        [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['smtp']}", "--from", "bob@other.test",
         "--to", "alice@esam.test", "--helo", "peer.other.test", "--data", f"@{msg}"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "250 2.0.0" in res.stdout
    m = imaps(esam)
    bodies = fetch_bodies(m)
    assert len(bodies) == 1
    assert body_of(bodies[0]) == body.encode()
    m.logout()


def test_swaks_unknown_recipient_is_rejected_at_rcpt(esam: EsamProcess) -> None:
    res = subprocess.run(
        [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['smtp']}", "--from", "bob@other.test",
         "--to", "ghost@esam.test", "--quit-after", "RCPT"],
        capture_output=True, text=True, timeout=60,
    )
    assert "550 5.1.1" in res.stdout


def test_msmtp_submits_over_starttls_and_mutt_reads(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_mailbox("alice", PASSWORD)
    esam.add_mailbox("bob", "Robert-Passw0rd")
    rc = tmp_path / "msmtprc"
    rc.write_text(
        "defaults\nauth on\ntls on\ntls_starttls on\n"
        f"tls_trust_file {esam.cert}\ntls_certcheck off\n"
        f"account alice\nhost 127.0.0.1\nport {esam.ports['submission']}\nfrom alice@esam.test\n"
        f"user alice\npassword {PASSWORD}\n"
    )
    rc.chmod(0o600)
    msg = (
        "From: Alice <alice@esam.test>\r\nTo: bob@esam.test\r\nSubject: via msmtp\r\n"
        "Message-ID: <msmtp-1@esam.test>\r\n\r\nHi Bob, sent with msmtp.\r\n"
    )
    res = subprocess.run([tool("msmtp"), "-C", str(rc), "-a", "alice", "bob@esam.test"],
                         input=msg.encode(), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    m = imaps(esam, "bob", "Robert-Passw0rd")
    bodies = fetch_bodies(m)
    assert len(bodies) == 1
    assert body_of(bodies[0]) == b"Hi Bob, sent with msmtp.\r\n"
    assert b"DKIM-Signature:" in bodies[0], "submitted mail is DKIM-signed"
    m.logout()

    # mutt, batch mode with its own muttrc, reads the message over IMAPS
    out = tmp_path / "mutt-out.txt"
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(
        f'set folder="imaps://bob@127.0.0.1:{esam.ports["imaps"]}/"\nset spoolfile="+INBOX"\n'
        'set imap_pass="Robert-Passw0rd"\nset ssl_verify_host=no\nset ssl_verify_dates=no\n'
        f'set certificate_file="{tmp_path}/mutt-certs"\nset header_cache=""\nset message_cachedir=""\n'
        "set sort=date\nset wait_key=no\nset quit=yes\nset move=no\nset mbox_type=Maildir\n"
        "set ssl_starttls=no\nset imap_check_subscribed=no\n"
    )
    (tmp_path / "mutt-certs").write_text(esam.cert.read_text())
    cmd = f'push "<pipe-message>cat > {out}<enter><quit>"'
    res = subprocess.run(
        ["script", "-qec", f"{tool('mutt')} -n -F {muttrc} -e '{cmd}'", "/dev/null"],
        capture_output=True, timeout=60, env={**os.environ, "TERM": "xterm", "HOME": str(tmp_path)},
    )
    assert wait_for(lambda: out.exists() and out.stat().st_size > 0), res.stdout.decode(errors="replace")
    assert "Hi Bob, sent with msmtp." in out.read_text()


def test_mbsync_copies_mailbox_to_local_maildir(esam: EsamProcess, tmp_path: Path) -> None:
    esam.add_mailbox("alice", PASSWORD)
    sent = []
    for i in range(3):
        body = f"message {i}\r\nline two\r\n".encode()
        sent.append(body.replace(b"\r\n", b"\n"))  # mbsync stores LF line ends locally
        f = tmp_path / f"m{i}.eml"
        f.write_bytes(f"From: bob@other.test\r\nSubject: m{i}\r\n\r\n".encode() + body[:-2])
        subprocess.run(
            [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['smtp']}", "--from", "bob@other.test",
             "--to", "alice@esam.test", "--data", f"@{f}"],
            check=True, capture_output=True, timeout=60,
        )
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount esam\nHost 127.0.0.1\nPort {esam.ports['imaps']}\nUser alice\nPass {PASSWORD}\n"
        f"SSLType IMAPS\nCertificateFile {esam.cert}\n\n"
        "IMAPStore esam-remote\nAccount esam\n\n"
        f"MaildirStore esam-local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel esam\nFar :esam-remote:\nNear :esam-local:\nPatterns *\nCreate Near\nSyncState *\n"
    )
    res = subprocess.run([tool("mbsync"), "-c", str(rc), "-a"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stdout + res.stderr
    got = sorted(p.read_bytes() for p in (local / "INBOX" / "cur").iterdir()) + sorted(
        p.read_bytes() for p in (local / "INBOX" / "new").iterdir()
    )
    assert len(got) == 3
    assert sorted(g.split(b"\n\n", 1)[1] for g in got) == sorted(sent)
    for folder in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (local / folder).is_dir(), folder


def test_graceful_stop_on_sigterm(esam: EsamProcess) -> None:
    esam.add_mailbox("alice", PASSWORD)
    assert esam.stop(signal.SIGTERM) == 0
    log = esam.log.read_text()
    assert "server.stopped" in log
    assert PASSWORD not in log


def test_logs_have_session_ids_and_no_secrets(esam: EsamProcess) -> None:
    esam.add_mailbox("alice", PASSWORD)
    m = imaps(esam)
    m.logout()
    with pytest.raises(imaplib.IMAP4.error):
        imaps(esam, "alice", "wrong-password-xyz")
    esam.stop()
    log = esam.log.read_text()
    assert "session=" in log
    assert PASSWORD not in log and "wrong-password-xyz" not in log


def test_serve_on_uvloop(make_esam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """server.uvloop = true: the same mail path works on uvloop (Twisted and aiosmtpd share it)."""
    esam = make_esam("uv", server={"uvloop": True})
    esam.esam("init")
    esam.start()
    esam.add_mailbox("alice", PASSWORD)
    msg = tmp_path / "uv.eml"
    msg.write_bytes(b"From: bob@other.test\r\nTo: alice@esam.test\r\nSubject: uv\r\n\r\non uvloop")
    res = subprocess.run(
        [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['smtp']}", "--from", "bob@other.test",
         "--to", "alice@esam.test", "--data", f"@{msg}"],
        capture_output=True, text=True, timeout=60,
    )
    assert "250 2.0.0" in res.stdout, res.stdout
    m = imaps(esam)
    assert [body_of(b) for b in fetch_bodies(m)] == [b"on uvloop\r\n"]
    m.logout()
    assert "msg=server.loop loop=uvloop" in esam.log.read_text()
