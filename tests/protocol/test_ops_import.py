"""An account imported from Dovecot logs in over IMAP with its old hash, which is then upgraded."""

from __future__ import annotations

import imaplib
import os
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt

from esam_mail.services.ops import migrate
from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol


def test_imported_user_logs_in_over_imap_and_reads_the_same_bytes(running: Running, tmp_path: Path) -> None:
    md = tmp_path / "mail" / "esam.test" / "olga" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    data = b"From: a@example.org\r\nSubject: old mail\r\n\r\nkept byte for byte\r\n"
    (md / "cur" / "1600000000.M1P2.oldhost:2,S").write_bytes(data)
    os.utime(md / "cur" / "1600000000.M1P2.oldhost:2,S", (1_600_000_000, 1_600_000_000))
    stored = "{SHA512-CRYPT}" + sha512_crypt.hash("olga's old password", rounds=5000)
    entries = migrate.parse_passwd_file(f"olga@esam.test:{stored}:1000:1000::/nonexistent::\n")
    report = running.lt.run(migrate.import_dovecot(running.services.directory, running.services.store, entries,
                                                   maildir_root=tmp_path / "mail", domain="esam.test"))
    assert report.created == ["olga"] and report.messages == 1

    im = imaplib.IMAP4_SSL("127.0.0.1", running.ports["imaps"], ssl_context=client_tls(), timeout=10)
    im.login("olga@esam.test", "olga's old password")
    im.select("INBOX")
    typ, resp = im.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    head, body = resp[0]  # type: ignore[misc]
    assert body == data and b"\\Seen" in head and b"13-Sep-2020" in head
    im.logout()
    rec = running.lt.run(running.services.directory.get("olga"))
    assert rec.password_hash.startswith("$argon2id$")
