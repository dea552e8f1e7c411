"""Inbound SPF/DKIM/DMARC cost: esam_mail with verification on vs off (and Postfix with
OpenDKIM, OpenDMARC and policyd-spf when ``--baseline``), against a local authoritative
DNS server on loopback (bench/authdns.py), so every check gets a real pass, not NXDOMAIN.

Usage::

    .venv/bin/python bench/dns_verify.py [--messages 2000] [--conns 8] [--domains 50] [--rounds N] [--baseline]

Load: ``--conns`` pipelining connections (as Postfix's client sends) deliver ``--messages``
messages of 10 KiB from ``--domains`` sender domains to 100 mailboxes.  Every sender
domain publishes SPF (``ip4:127.0.0.1 -all``), a 2048-bit RSA DKIM key and DMARC
``p=reject``; every message is DKIM-signed by its domain (dkimpy, before the clock
starts) and comes from 127.0.0.1, so SPF, DKIM and DMARC all pass.  A message counts
when its file is in the Maildir.  The same run measures verification off, then on;
the target (issue 13) is on >= 70 % of off.  The result is printed and written to
``<dir>/result.json``; docs/benchmarks.md quotes it.

``--baseline`` first runs Postfix (+ Dovecot LMTP, bench/baseline.py) without and with
OpenDKIM, OpenDMARC and policyd-spf (Debian's packages, installed when missing), each
daemon pointed at the same zones (a second server on 127.0.0.153:53; see
``in_namespace``).  Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import run  # noqa: E402  (bench/run.py: Esam, PipeliningClient, counters)

SELECTOR = "bench"


def dkim_key() -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def zones(domains: int, dkim_txt: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for k in range(domains):
        d = f"sender{k}.test"
        out[d] = {"TXT": ["v=spf1 ip4:127.0.0.1 -all"], "MX": [f"10 mx.{d}."], "A": ["127.0.0.1"]}
        out[f"{SELECTOR}._domainkey.{d}"] = {"TXT": [dkim_txt]}
        out[f"_dmarc.{d}"] = {"TXT": ["v=DMARC1; p=reject"]}
    out["client.test"] = {"A": ["127.0.0.1"], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]}
    return out


def signed_messages(n: int, domains: int, size: int, pem: bytes) -> list[tuple[str, str, bytes]]:
    import dkim

    out = []
    now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopq.\r\n"
    body = (line * (size // len(line) + 1))[:size].encode()
    for i in range(n):
        d = f"sender{i % domains}.test"
        rcpt = f"{run.USERS[i % len(run.USERS)]}@{run.DOMAIN}"
        head = (f"From: Load <load@{d}>\r\nTo: <{rcpt}>\r\nSubject: verify bench {i}\r\nDate: {now}\r\n"
                f"Message-ID: <vb.{i}.{time.time_ns()}@{d}>\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
        msg = head + body
        sig = dkim.sign(msg, SELECTOR.encode(), d.encode(), pem,
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        out.append((f"load@{d}", rcpt, sig + msg))
    return out


async def load(port: int, maildirs: list[Path], pids: list[int], msgs: list[tuple[str, str, bytes]],
               conns: int, limit: float) -> dict[str, float]:
    base = run.count_delivered(maildirs)
    todo = list(range(len(msgs)))
    errors = 0
    cpu0 = run.cpu_seconds(pids)
    t0 = time.perf_counter()
    deadline = t0 + limit

    async def conn() -> None:
        nonlocal errors
        c = run.PipeliningClient(port)
        await c.connect()
        try:
            while todo and time.perf_counter() < deadline:
                sender, rcpt, data = msgs[todo.pop()]
                try:
                    await c.send(sender, rcpt, data)
                except (RuntimeError, ConnectionError, OSError):
                    errors += 1
                    await c.quit()
                    c = run.PipeliningClient(port)
                    await c.connect()
        finally:
            await c.quit()

    sender = asyncio.gather(*(conn() for _ in range(conns)))
    while True:
        await asyncio.sleep(0.1)
        delivered = run.count_delivered(maildirs) - base
        if (sender.done() and delivered >= len(msgs) - errors) or time.perf_counter() > deadline + 60:
            break
    elapsed = time.perf_counter() - t0
    await sender
    cpu = run.cpu_seconds(pids) - cpu0
    return {"delivered": delivered, "errors": errors, "seconds": elapsed, "per_s": delivered / elapsed,
            "cpu_ms_per_msg": cpu * 1000 / max(delivered, 1)}


def verdicts(maildirs: list[Path], sample: int = 5, headers: tuple[str, ...] = ("authentication-results:",)) -> list[str]:
    """Authentication-Results of a few delivered messages (proof the checks passed)."""
    out = []
    for d in maildirs:
        files = [f for sub in ("new", "cur") if (d / sub).is_dir() for f in (d / sub).iterdir()]
        for f in sorted(files, key=lambda f: f.stat().st_mtime)[-1:]:
            head = f.read_bytes().split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
            for line in head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n"):
                if line.lower().startswith(headers):
                    out.append(line)
        if len(out) >= sample:
            break
    return out


# -- the classic stack: Postfix + OpenDKIM + OpenDMARC + policyd-spf ---------------------
#: OpenDKIM (libunbound) is told the server by ``Nameservers``.  policyd-spf and
#: OpenDMARC use the system resolver (/etc/resolv.conf): each runs in its own mount
#: namespace where that file names our loopback server, so the machine's DNS (shared with
#: everyone else) is untouched.  53 is the only port they can use, hence its own address.
BASELINE_DNS = "127.0.0.153"
MILTER_DKIM, MILTER_DMARC = 18891, 18893

OPENDKIM_CONF = """\
Mode v
Socket inet:{dkim}@127.0.0.1
Syslog no
UserID opendkim
PidFile {d}/opendkim.pid
AuthservID baseline.bench.test
Nameservers {dns}
"""

OPENDMARC_CONF = """\
Socket inet:{dmarc}@127.0.0.1
Syslog false
UserID opendmarc
PidFile {d}/opendmarc.pid
AuthservID baseline.bench.test
TrustedAuthservIDs baseline.bench.test
IgnoreHosts {d}/dmarc-ignore
IgnoreAuthenticatedClients false
RejectFailures true
SPFSelfValidate false
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
"""

POLICYD_SPF_CONF = """\
debugLevel = 0
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 192.0.2.255/32
Header_Type = SPF
"""

BASELINE_PACKAGES = ("opendkim", "opendmarc", "postfix-policyd-spf-python")


def ensure_baseline_installed() -> None:
    need = [p for p in BASELINE_PACKAGES
            if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if need:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env, check=True)


def in_namespace(resolv: Path, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace whose /etc/resolv.conf is ``resolv``."""
    import shlex

    cmd = f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && exec {shlex.join(argv)}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd]


def make_verifying_baseline(root: Path, verify: bool) -> Any:
    import baseline

    class VerifyingBaseline(baseline.Baseline):
        name = "Postfix+OpenDKIM+OpenDMARC+policyd-spf"
        verify = True

        def setup(self) -> None:
            super().setup()
            if not self.verify:
                return
            d = self.pf
            (d / "resolv.conf").write_text(f"nameserver {BASELINE_DNS}\noptions timeout:2 attempts:2\n")
            (d / "dmarc-ignore").write_text("192.0.2.255\n")
            (d / "opendkim.conf").write_text(OPENDKIM_CONF.format(d=d, dkim=MILTER_DKIM, dns=BASELINE_DNS))
            (d / "opendmarc.conf").write_text(OPENDMARC_CONF.format(d=d, dmarc=MILTER_DMARC))
            (d / "policyd-spf.conf").write_text(POLICYD_SPF_CONF)
            for f in d.iterdir():
                if f.is_file():
                    os.chmod(f, 0o644)
            main = (d / "main.cf").read_text().replace(
                "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
                "smtpd_recipient_restrictions = reject_unauth_destination, "
                "check_policy_service unix:private/policyd-spf, permit_mynetworks")
            main += (f"smtpd_milters = inet:127.0.0.1:{MILTER_DKIM}, inet:127.0.0.1:{MILTER_DMARC}\n"
                     "milter_default_action = tempfail\npolicyd-spf_time_limit = 3600\n")
            (d / "main.cf").write_text(main)
            with open(d / "master.cf", "a") as f:
                f.write(f"policyd-spf unix - n n - 0 spawn user=policyd-spf "
                        f"argv=/usr/bin/policyd-spf {d / 'policyd-spf.conf'}\n")
            subprocess.run(["postfix", "-c", str(d), "check"], check=True)

        def start(self, auth_cache: bool) -> None:
            if not self.verify:
                super().start(auth_cache)
                return
            resolv = self.pf / "resolv.conf"
            for name, flag, conf in (("opendkim", "-x", "opendkim.conf"), ("opendmarc", "-c", "opendmarc.conf")):
                self.procs.append(subprocess.Popen(
                    in_namespace(resolv, [f"/usr/sbin/{name}", "-f", flag, str(self.pf / conf)]),
                    stdout=open(self.pf / f"{name}.out", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
            baseline._wait_port(MILTER_DKIM)
            baseline._wait_port(MILTER_DMARC)
            real_popen = subprocess.Popen

            def popen(argv: list[str], **kw: Any) -> Any:
                if argv[:1] == ["postfix"]:
                    argv = in_namespace(resolv, argv)
                return real_popen(argv, **kw)

            subprocess.Popen = popen  # type: ignore[assignment,misc]
            try:
                super().start(auth_cache)
            finally:
                subprocess.Popen = real_popen  # type: ignore[misc]

        def stop(self) -> None:
            super().stop()
            for p in self.procs:  # milters started before a failed start
                if p.poll() is None:
                    p.terminate()
                    p.wait(10)

    cert, key = root / "cert.pem", root / "key.pem"
    if not cert.exists():
        sys.path.insert(0, str(ROOT))
        from esam_mail import tls

        tls.ensure_dev_certificate(cert, key, "baseline.bench.test")
    ports = {"smtp": run.free_port(), "imaps": run.free_port(), "lmtp": run.free_port()}
    # the load only delivers mail: a fixed, unusable SHA512-CRYPT string is enough for Dovecot's passwd-file
    b = VerifyingBaseline(root / ("baseline-on" if verify else "baseline-off"), dict.fromkeys(run.USERS, "$6$x$x"),
                          run.DOMAIN, ports, cert, key)
    b.verify = verify
    return b


def start_dns(root: Path, records: dict[str, Any], host: str = "127.0.0.1",
              port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    zf, ready = root / "zones.json", root / f"dns-{host}.port"
    zf.write_text(json.dumps(records))
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(HERE / "authdns.py"), "--host", host, "--port", str(port),
                             "--zones", str(zf), "--ready", str(ready)])
    deadline = time.monotonic() + 20
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("authdns did not start")
        time.sleep(0.05)
    return proc, int(ready.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--domains", type=int, default=50)
    p.add_argument("--size", type=int, default=10 * 1024)
    p.add_argument("--rounds", type=int, default=1, help="alternate off/on this many times; medians")
    p.add_argument("--dir", default="/var/tmp/esam-dnsbench")
    p.add_argument("--baseline", action="store_true",
                   help="also Postfix (+Dovecot LMTP) without and with OpenDKIM, OpenDMARC and policyd-spf")
    args = p.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    pem, txt = dkim_key()
    print("signing messages ...", flush=True)
    msgs = signed_messages(args.messages, args.domains, args.size, pem)
    records = zones(args.domains, txt)
    dns_proc, dns_port = start_dns(root, records)
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": [], "pf_off": [], "pf_on": []}
    samples: list[str] = []
    pf_samples: list[str] = []
    procs = [dns_proc]
    try:
        if args.baseline:
            ensure_baseline_installed()
            procs.append(start_dns(root, records, BASELINE_DNS, 53)[0])
            for mode in ("off", "on"):
                b = make_verifying_baseline(root, verify=mode == "on")
                b.setup()
                try:
                    b.start(True)
                    r = asyncio.run(load(b.smtp_port, b.maildirs(), b.pids(), msgs, args.conns, 600))
                finally:
                    b.stop()
                results[f"pf_{mode}"].append(r)
                print(f"postfix verify={mode}: {r}", flush=True)
                if mode == "on":
                    pf_samples = verdicts(b.maildirs(), headers=("authentication-results:", "received-spf:"))
        esam = run.Esam(root / "esam", 1, {u: "x" for u in run.USERS},
                        {"dns": {"nameservers": [f"127.0.0.1:{dns_port}"]}})
        esam.setup()
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                esam.extra["inbound"] = {"verify": mode == "on", "dmarc_reject": True}
                esam.start(True)
                try:
                    r = asyncio.run(load(esam.smtp_port, esam.maildirs(), esam.pids(), msgs, args.conns, 600))
                finally:
                    esam.stop()
                results[mode].append(r)
                print(f"esam verify={mode}: {r}", flush=True)
                if mode == "on":
                    samples = verdicts(esam.maildirs())
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    def med(mode: str, key: str) -> float:
        vals = sorted(r[key] for r in results[mode])
        return vals[len(vals) // 2]

    off, on = med("off", "per_s"), med("on", "per_s")
    if args.baseline:
        extra = {"postfix_off_per_s": med("pf_off", "per_s"), "postfix_on_per_s": med("pf_on", "per_s"),
                 "postfix_cpu_ms_off": med("pf_off", "cpu_ms_per_msg"),
                 "postfix_cpu_ms_on": med("pf_on", "cpu_ms_per_msg"), "postfix_samples": pf_samples}
    else:
        extra = {}
    report = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "esam_off_per_s": off, "esam_on_per_s": on, "ratio": on / off,
        "cpu_ms_off": med("off", "cpu_ms_per_msg"), "cpu_ms_on": med("on", "cpu_ms_per_msg"),
        "errors": sum(r["errors"] for rs in results.values() for r in rs),
        "samples": samples, "args": vars(args), **extra,
    }
    print(json.dumps(report, indent=2))
    (root / "result.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
