"""Postfix + Dovecot baseline for the benchmark, in their own config folders.

Postfix (smtpd on a loopback high port) -> Dovecot LMTP (loopback) -> Maildir,
Dovecot IMAP over implicit TLS.  The same 100 users and the *same* argon2id hash
string as esam_mail (``{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$...``, verified by
libsodium).  Nothing in /etc is changed: both run in the foreground from files
under the benchmark's work folder (``postfix -c DIR start-fg``, ``dovecot -F -c FILE``).

Settings that differ from the packages' defaults, and why:
* Postfix: no chroot, ``maillog_file`` (no syslog here), virtual mailbox domain with a
  recipient map (unknown users are rejected at RCPT, as esam_mail does), LMTP transport.
* Kernel: ``fs.inotify.max_user_instances`` is raised to 20,000 while the baseline runs
  (restored afterwards): every Dovecot IDLE session is a process with its own inotify
  instance, and past the default 128 Dovecot falls back to polling every 30 s.
* Dovecot: ``service imap-login { service_count = 0 }`` ("high-performance mode", the
  documented setting for many connections), ``process_limit`` and
  ``mail_max_userip_connections`` raised for 10,000 IDLE sessions,
  ``auth_cache_size`` 0 or 10M (the cache on/off runs), ``mail_fsync = optimized``
  (the default; it fsyncs delivered mail).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

MAIL_UID = 8  # Debian's "mail" user owns the baseline's Maildirs


def ensure_installed() -> None:
    """apt-get install postfix dovecot-imapd dovecot-lmtpd when missing."""
    need = []
    if not Path("/usr/sbin/postconf").exists():
        need.append("postfix")
    for pkg in ("dovecot-imapd", "dovecot-lmtpd"):
        if subprocess.run(["dpkg", "-s", pkg], capture_output=True).returncode != 0:
            need.append(pkg)
    if not need:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select No configuration\n",
                   check=False)
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env, check=True)


def versions() -> str:
    pf = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    dv = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    return f"Postfix {pf}, Dovecot {dv}"


MASTER_CF = """\
127.0.0.1:{smtp} inet n - n - - smtpd
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

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/maillog
maillog_file_prefixes = /var, /dev/stdout, {d}
myhostname = baseline.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{d}/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
biff = no
"""

DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_cache_size = {cache}
auth_cache_ttl = {ttl} s
auth_cache_negative_ttl = 0
mail_location = maildir:~/Maildir
mail_fsync = optimized
first_valid_uid = {uid}
mail_max_userip_connections = 2000
default_client_limit = 12000
default_vsz_limit = 1G
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID username_format=%n {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = 6000
}}
service imap {{
  process_limit = 12000
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
service anvil {{
  client_limit = 24000
}}
protocol lmtp {{
  postmaster_address = postmaster@{domain}
}}
"""


class Baseline:
    """Postfix + Dovecot under ``root`` (wiped by ``setup``)."""

    name = "Postfix+Dovecot"

    def __init__(self, root: Path, users: dict[str, str], domain: str,
                 ports: dict[str, int], cert: Path, key: Path) -> None:
        self.root = root
        self.hashes = users  # login -> hash (PHC/crypt string without a {SCHEME} prefix)
        self.users = list(users)
        self.domain = domain
        self.smtp_port = ports["smtp"]
        self.imaps_port = ports["imaps"]
        self.lmtp_port = ports["lmtp"]
        self.cert, self.key = cert, key
        self.pf = root / "postfix"
        self.dv = root / "dovecot"
        self.procs: list[subprocess.Popen[bytes]] = []

    def maildirs(self) -> list[Path]:
        return [self.dv / "mail" / u / "Maildir" for u in self.users if u.startswith("user")]

    def setup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for d in (self.pf / "queue", self.pf / "data", self.dv / "run", self.dv / "state", self.dv / "mail"):
            d.mkdir(parents=True)
        os.chown(self.pf / "data", _uid("postfix"), _gid("postfix"))
        (self.pf / "main.cf").write_text(MAIN_CF.format(d=self.pf, domain=self.domain, lmtp=self.lmtp_port))
        (self.pf / "master.cf").write_text(MASTER_CF.format(smtp=self.smtp_port))
        (self.pf / "vmailbox").write_text("".join(f"{u}@{self.domain} OK\n" for u in self.users))
        lines = [f"{u}:{{{_scheme(h)}}}{h}:{MAIL_UID}:{MAIL_UID}::{self.dv / 'mail' / u}::\n"
                 for u, h in self.hashes.items()]
        (self.dv / "passwd").write_text("".join(lines))
        for u in self.users:
            home = self.dv / "mail" / u
            home.mkdir()
            os.chown(home, MAIL_UID, MAIL_UID)
        os.chown(self.dv / "mail", MAIL_UID, MAIL_UID)
        shutil.copy(self.cert, self.dv / "cert.pem")
        shutil.copy(self.key, self.dv / "key.pem")
        os.chmod(self.dv / "key.pem", 0o600)
        subprocess.run(["postfix", "-c", str(self.pf), "check"], check=True)

    def start(self, auth_cache: bool, cache_ttl: int = 60) -> None:
        self._inotify_old = _set_sysctl(INOTIFY, "20000")
        conf = DOVECOT_CONF.format(
            d=self.dv, cert=self.dv / "cert.pem", key=self.dv / "key.pem", domain=self.domain,
            cache="10M" if auth_cache else "0", uid=MAIL_UID, imaps=self.imaps_port, lmtp=self.lmtp_port,
            ttl=cache_ttl,
        )
        (self.dv / "dovecot.conf").write_text(conf)
        self.procs.append(subprocess.Popen(["dovecot", "-F", "-c", str(self.dv / "dovecot.conf")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        self.procs.append(subprocess.Popen(["postfix", "-c", str(self.pf), "start-fg"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        _wait_port(self.smtp_port)
        _wait_port(self.imaps_port)
        _wait_port(self.lmtp_port)

    def pids(self) -> list[int]:
        """Roots of the server process trees (descendants are found from these)."""
        return [p.pid for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.pf), "stop"], capture_output=True)
        subprocess.run(["doveadm", "-c", str(self.dv / "dovecot.conf"), "stop"], capture_output=True)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if getattr(self, "_inotify_old", None):
            _set_sysctl(INOTIFY, self._inotify_old)
            self._inotify_old = None


INOTIFY = "/proc/sys/fs/inotify/max_user_instances"


def _set_sysctl(path: str, value: str) -> str | None:
    """Write a /proc/sys value; returns the old one (None when not allowed here)."""
    try:
        old = Path(path).read_text().strip()
        Path(path).write_text(value)
        return old
    except OSError as exc:
        print(f"warning: cannot set {path} ({exc}); Dovecot IDLE may fall back to polling")
        return None


def _scheme(hashed: str) -> str:
    if hashed.startswith("$argon2id$"):
        return "ARGON2ID"
    if hashed.startswith("$6$"):
        return "SHA512-CRYPT"
    raise ValueError("unsupported hash for the baseline")


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def _gid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_gid


def _wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
