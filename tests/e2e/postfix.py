"""A real Postfix (Debian's) as "the other operator", run by the tests.

``PostfixPeer`` writes its own ``main.cf``/``master.cf`` into a fresh folder under
/tmp (traversable by the ``postfix`` user, unlike pytest's 0700 tmp dirs) and runs
``postfix -c DIR start`` on a free loopback port.  Postfix is:

* the MX of ``other.test``: virtual mailboxes (Maildir under ``DIR/mail``) for the
  addresses given; any other ``@other.test`` recipient is refused at RCPT with
  ``550 5.1.1`` (virtual_mailbox_maps);
* a relay for ``127.0.0.1`` (mynetworks) whose transport map sends ``esam.test``
  to our MX on ``127.0.0.1:<port>``; ``transports`` adds lines to that map (e.g.
  ``{"bounce.test": "error:5.1.1 mailbox unavailable"}`` makes Postfix accept mail for
  that domain and then bounce it, as a real remote MTA does after queueing).

It needs root (``postfix start``; CI runs as root) and the Debian package (the
``postfix`` user and ``postdrop`` group).  ``stop()`` is ``postfix -c DIR stop``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import smtplib
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port

POSTFIX = "/usr/sbin/postfix"


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{port}     inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixPeer:
    """One Postfix instance; ``users`` are the deliverable local parts at other.test."""

    def __init__(
        self, users: list[str], *, esam_mx_port: int, domain: str = "other.test",
        transports: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="esam-postfix-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.conf = self.root / "etc"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.mail = self.root / "mail"
        self.domain = domain
        self.users = users
        self.port = free_port()
        self.esam_mx_port = esam_mx_port
        self.transports = dict(transports or {})  # extra transport(5) lines: domain -> nexthop
        self.running = False
        pw = pwd.getpwnam("postfix")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        for d in (self.conf, self.queue, self.data, self.mail):
            d.mkdir()
            os.chmod(d, 0o755)
        os.chown(self.data, self.uid, self.gid)
        os.chown(self.mail, self.uid, self.gid)
        self._write_config()

    # -- config -----------------------------------------------------------------------------
    def _write_config(self) -> None:
        (self.conf / "vmailbox").write_text(
            "".join(f"{u}@{self.domain} {self.domain}/{u}/\n" for u in self.users)
        )
        (self.conf / "transport").write_text(
            f"esam.test smtp:[127.0.0.1]:{self.esam_mx_port}\n"
            + "".join(f"{d} {t}\n" for d, t in self.transports.items())
        )
        main = {
            "compatibility_level": "3.6",
            "config_directory": str(self.conf),
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "meta_directory": "/etc/postfix",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": f"mx.{self.domain}",
            "mydomain": self.domain,
            "myorigin": "$mydomain",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "relay_domains": "",
            "transport_maps": f"texthash:{self.conf / 'transport'}",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": str(self.mail),
            "virtual_mailbox_maps": f"texthash:{self.conf / 'vmailbox'}",
            "virtual_uid_maps": f"static:{self.uid}",
            "virtual_gid_maps": f"static:{self.gid}",
            "virtual_minimum_uid": "1",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtp_host_lookup": "native",
            "disable_dns_lookups": "yes",
            "smtp_dns_support_level": "disabled",
            "smtpd_banner": "$myhostname ESMTP Postfix (esam test peer)",
            "maillog_file": str(self.root / "maillog"),
            "maillog_file_prefixes": str(self.root),
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "biff": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": str(60 * 1024 * 1024),
            "virtual_mailbox_limit": "0",
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.port}"))
        for f in self.conf.iterdir():
            os.chmod(f, 0o644)  # the postfix user reads the maps, whatever our umask is

    # -- lifecycle ----------------------------------------------------------------------------
    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # postfix(1) logs to syslog unless stderr is a terminal; /dev/log may not exist
        # here, so run it under script(1) to see its messages.
        # umask 022: post-install creates the queue folders, which the postfix user must
        # read; the test process may run with a stricter umask (other tests set one).
        cmd = "umask 022; exec " + " ".join(shlex.quote(a) for a in [POSTFIX, "-c", str(self.conf), *args])
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                             timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"postfix {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}\n"
                                 f"{self.log()}")
        return res

    def start(self) -> None:
        self.postfix("check")
        self.postfix("start")
        self.running = True
        if not wait_for(self._answers, 30):
            raise AssertionError(f"postfix does not answer on {self.port}:\n{self.log()}")

    def _answers(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
                return s.noop()[0] == 250
        except OSError:
            return False

    def stop(self) -> None:
        if self.running:
            self.postfix("stop", check=False)
            self.running = False
            wait_for(lambda: not self._answers(), 30)

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def flush(self) -> None:
        """``postfix flush``: retry deferred mail now."""
        self.postfix("flush", check=False)

    # -- inspection ---------------------------------------------------------------------------
    def log(self) -> str:
        p = self.root / "maillog"
        return p.read_text(errors="replace") if p.exists() else "(no maillog)"

    def maildir(self, user: str) -> Path:
        return self.mail / self.domain / user

    def messages(self, user: str) -> list[bytes]:
        out = []
        for sub in ("new", "cur"):
            d = self.maildir(user) / sub
            if d.is_dir():
                out.extend(p.read_bytes() for p in sorted(d.iterdir()))
        return out

    def queue_ids(self) -> list[str]:
        res = subprocess.run(["/usr/sbin/postqueue", "-c", str(self.conf), "-j"], capture_output=True,
                             text=True, timeout=30)
        return [line for line in res.stdout.splitlines() if line.strip()]
