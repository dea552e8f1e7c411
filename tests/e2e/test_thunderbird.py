"""A real Thunderbird, headless, against `esam serve` as a subprocess (issue 15).

The profile is made before Thunderbird starts, as Thunderbird itself would have left it:
``user.js`` with one IMAP account on 127.0.0.1 (implicit TLS, normal password, offline
download on), ``cert_override.txt`` trusting the test's self-signed certificate by its
SHA-256 fingerprint, and ``logins.json`` holding the password encrypted by NSS's SDR
under the profile's own key4.db with an empty primary password (written here through
libnss3, the library Thunderbird uses; modern Thunderbird has no password pref).

Thunderbird then logs in, LISTs, SELECTs INBOX and downloads the message for offline
use.  The test checks it from both sides: the server's protocol transcript (log level
``trace``) shows the commands of the sessions that logged in as the user, and the
message is in Thunderbird's offline store under the profile.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import hashlib
import imaplib
import json
import os
import re
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import EsamProcess, tool

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-Passw0rd"
USER = "tbuser"
MARKER = "thunderbird-offline-marker-7f3c"


class _SECItem(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint), ("data", ctypes.c_void_p), ("len", ctypes.c_uint)]


def _nss_logins(profile: Path, origin: str, user: str, password: str) -> dict[str, object]:
    """Create the profile's NSS key database (empty primary password) and return the
    logins.json content with ``user``/``password`` encrypted by PK11SDR_Encrypt."""
    nss = ctypes.CDLL(ctypes.util.find_library("nss3") or "libnss3.so")
    nss.NSS_InitReadWrite.argtypes = [ctypes.c_char_p]
    nss.PK11_GetInternalKeySlot.restype = ctypes.c_void_p
    nss.PK11_NeedUserInit.argtypes = [ctypes.c_void_p]
    nss.PK11_InitPin.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    nss.PK11_FreeSlot.argtypes = [ctypes.c_void_p]
    nss.PK11SDR_Encrypt.argtypes = [ctypes.POINTER(_SECItem)] * 3 + [ctypes.c_void_p]
    nss.SECITEM_FreeItem.argtypes = [ctypes.POINTER(_SECItem), ctypes.c_int]
    assert nss.NSS_InitReadWrite(f"sql:{profile}".encode()) == 0, "NSS_InitReadWrite failed"
    try:
        slot = nss.PK11_GetInternalKeySlot()
        assert slot, "no internal key slot"
        if nss.PK11_NeedUserInit(slot):
            assert nss.PK11_InitPin(slot, None, b"") == 0, "PK11_InitPin failed"
        nss.PK11_FreeSlot(slot)

        def encrypt(text: str) -> str:
            raw = text.encode()
            buf = ctypes.create_string_buffer(raw, len(raw))
            data = _SECItem(0, ctypes.cast(buf, ctypes.c_void_p), len(raw))
            out, keyid = _SECItem(0, None, 0), _SECItem(0, None, 0)
            assert nss.PK11SDR_Encrypt(ctypes.byref(keyid), ctypes.byref(data),
                                       ctypes.byref(out), None) == 0, "PK11SDR_Encrypt failed"
            value = base64.b64encode(ctypes.string_at(out.data, out.len)).decode()
            nss.SECITEM_FreeItem(ctypes.byref(out), 0)
            return value

        now = int(time.time() * 1000)
        login = {
            "id": 1, "hostname": origin, "httpRealm": origin, "formSubmitURL": None,
            "usernameField": "", "passwordField": "", "encryptedUsername": encrypt(user),
            "encryptedPassword": encrypt(password), "guid": f"{{{uuid.uuid4()}}}", "encType": 1,
            "timeCreated": now, "timeLastUsed": now, "timePasswordChanged": now, "timesUsed": 1,
        }
    finally:
        nss.NSS_Shutdown()
    return {"nextId": 2, "logins": [login], "potentiallyVulnerablePasswords": [],
            "dismissedBreachAlertsByLoginGUID": {}, "version": 3}


def _pref(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else json.dumps(value)


def make_profile(profile: Path, port: int, cert: Path) -> None:
    profile.mkdir(parents=True)
    logins = _nss_logins(profile, "imap://127.0.0.1", USER, PASSWORD)
    (profile / "logins.json").write_text(json.dumps(logins))
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    (profile / "cert_override.txt").write_text(
        "# PSM Certificate Override Settings file\n"
        "# This is a generated file!  Do not edit.\n"
        f"127.0.0.1:{port}:\tOID.2.16.840.1.101.3.4.2.1\t{fingerprint}\t\t\n")
    prefs: dict[str, object] = {
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.account.account1.identities": "id1",
        "mail.account.account1.server": "server1",
        "mail.account.account2.server": "server2",
        "mail.identity.id1.fullName": "TB User",
        "mail.identity.id1.useremail": f"{USER}@esam.test",
        "mail.identity.id1.valid": True,
        "mail.server.server1.type": "imap",
        "mail.server.server1.hostname": "127.0.0.1",
        "mail.server.server1.port": port,
        "mail.server.server1.userName": USER,
        "mail.server.server1.name": "esam",
        "mail.server.server1.socketType": 3,  # implicit TLS
        "mail.server.server1.authMethod": 3,  # normal password
        "mail.server.server1.login_at_startup": True,
        "mail.server.server1.check_new_mail": True,
        "mail.server.server1.offline_download": True,
        "mail.server.server1.autosync_offline_stores": True,
        "mail.server.server1.directory-rel": "[ProfD]ImapMail/127.0.0.1",
        "mail.server.server2.type": "none",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.server.server2.name": "Local Folders",
        "mail.server.server2.directory-rel": "[ProfD]Mail/Local Folders",
        "mail.shell.checkDefaultClient": False,
        "mail.rights.version": 1,
        "mailnews.start_page.enabled": False,
        "mail.provider.suppress_dialog_on_startup": True,
        "app.update.auto": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
    }
    (profile / "user.js").write_text(
        "".join(f'user_pref("{k}", {_pref(v)});\n' for k, v in prefs.items()))


def commands_of(log: str, user: str) -> list[str]:
    """Command lines (lower-cased) of the sessions that logged in as ``user``, from the
    server's trace transcript."""
    sessions = set(re.findall(rf"event=imap\.login result=ok session=(\w+) \S+ user={user} ", log))
    out = []
    for m in re.finditer(r"event=imap\.command session=(\w+) line=b'([^\n]*)'\"?$", log, re.M):
        if m.group(1) in sessions:  # logfmt escapes the quotes inside msg="..."
            line = m.group(2).replace('\\"', '"')
            out.append(line.split(" ", 1)[1].lower() if " " in line else "")
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EsamProcess]:
    (tmp_path / "esam").mkdir()
    p = EsamProcess(tmp_path / "esam", server={"log_level": "trace"})
    p.esam("init")
    p.start()
    try:
        yield p
    finally:
        p.stop()


def test_thunderbird_headless_logs_in_lists_selects_and_downloads(server: EsamProcess,
                                                                    tmp_path: Path) -> None:
    thunderbird = tool("thunderbird")
    server.add_mailbox(USER, PASSWORD)
    message = (f"From: Bob <bob@other.test>\r\nTo: {USER}@esam.test\r\n"
               f"Subject: Hello Thunderbird\r\nMessage-ID: <tb-e2e@other.test>\r\n"
               f"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{MARKER}\r\n").encode()
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False
    with imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=20) as m:
        m.login(USER, PASSWORD)
        assert m.append("INBOX", None, None, message)[0] == "OK"

    profile = tmp_path / "profile"
    make_profile(profile, server.ports["imaps"], server.cert)
    home = tmp_path / "home"
    home.mkdir()
    offline = profile / "ImapMail" / "127.0.0.1" / "INBOX"
    out = tmp_path / "thunderbird.out"
    with open(out, "wb") as outf:
        proc = subprocess.Popen(
            [thunderbird, "--headless", "-no-remote", "-profile", str(profile)],
            stdout=outf, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HOME": str(home), "MOZ_HEADLESS": "1",
                 "MOZ_CRASHREPORTER_DISABLE": "1"},
        )
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if offline.exists() and MARKER.encode() in offline.read_bytes():
                break
            if proc.poll() is not None:
                break
            time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group may be gone
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # the group may be gone
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = server.log.read_text()
    cmds = commands_of(log, USER)
    said = [x for x in out.read_text(errors="replace").splitlines()
            if x.strip() and "Gtk-CRITICAL" not in x and "glib warning" not in x]
    context = f"commands: {cmds}\nthunderbird: {said[-20:]}"
    assert cmds, f"Thunderbird never logged in\n{context}"
    assert any(c.startswith("list ") for c in cmds), context
    assert any(re.fullmatch(r'select "?inbox"?', c) for c in cmds), context
    assert any(c.startswith("uid fetch") and "body.peek[]" in c for c in cmds), context
    assert "event=imap.server_bug" not in log
    assert offline.exists() and MARKER.encode() in offline.read_bytes(), context
    stored = offline.read_bytes()
    assert b"Subject: Hello Thunderbird" in stored and b"Message-ID: <tb-e2e@other.test>" in stored
