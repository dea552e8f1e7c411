"""esam_mail vs Postfix + Dovecot on this machine: one command, same loads, a ratio table.

Usage::

    .venv/bin/python bench/run.py [--quick] [--only esam|baseline] [--workers N] [--rounds N]
                                  [--scheme sha512-crypt|argon2id]
                                  [--dir /var/tmp/esam-bench] [--no-write]

Runs as root (installs postfix, dovecot-imapd and dovecot-lmtpd from Debian when
missing; the baseline's Maildirs belong to the "mail" user).  Everything listens on
127.0.0.1 high ports; every load is bounded in count and time.

Loads (the same for both servers, in the same run):

* SMTP: 16 pipelining connections, 5,000 messages of 10 KiB round-robin over 100 mailboxes.
  A message counts as delivered when its file is in the recipient's Maildir (the
  Maildirs are polled).  Latency: MAIL FROM -> final 250 (aiosmtplib ``sendmail``).
  Server CPU: utime+stime of every server process (plus what they reaped), from
  /proc/<pid>/stat, per delivered message.
* IMAP: 16 clients loop TLS connect, LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS
  RFC822.SIZE ENVELOPE), 3 full bodies, UID STORE +FLAGS (\\Seen), LOGOUT.
* Logins: 16 clients loop TLS connect, LOGIN, LOGOUT; with the auth cache on and off.
* IDLE: N sessions (TLS, LOGIN, SELECT, IDLE); server PSS (/proc/<pid>/smaps_rollup)
  before and after; then deliveries to sampled users and the delay from the SMTP
  250 to each of that user's sessions seeing ``* N EXISTS``.

Messages look like real inbound mail (two Received lines, a DKIM-Signature, MIME
multipart/alternative, quoted-printable) and are sent with PIPELINING (MAIL, RCPT and DATA
in one write), as Postfix's client does.

Password hashes (``--scheme``): SHA512-CRYPT imported into both servers, as a competent admin
runs Dovecot (esam_mail rehashes to argon2id at the first, unmeasured login), or one argon2id
string for both.  ``--rounds N`` alternates the servers and reports medians; every load also
reports "other CPU" (what neither the server nor the load generator used), so a disturbed
run is visible.  Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from aimap import Client, IMAPError, client_tls  # noqa: E402
from baseline import Baseline, ensure_installed, versions  # noqa: E402

USERS = [f"user{i:03d}" for i in range(100)]
# IDLE sessions log in as these: a cheap SHA512-CRYPT hash (rounds=5000) on both servers,
# because Dovecot re-verifies the password hash on every login even with its auth cache,
# and 10,000 argon2id checks would take an hour here.  IDLE measures memory and push delay.
IDLE_USERS = [f"idle{i:03d}" for i in range(100)]
PASSWORD = "bench-Pass-2026"
DOMAIN = "esam.bench"
ARGON2 = (65536, 3, 4)  # KiB, iterations, lanes: esam_mail's defaults
CLK = os.sysconf("SC_CLK_TCK")


# -- process accounting ------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def tree(roots: list[int]) -> list[int]:
    """``roots`` and all their live descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                children.setdefault(int(st[1]), []).append(int(d))
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(roots: list[int]) -> float:
    """utime+stime+cutime+cstime over the live tree: every process, dead or alive, once."""
    total = 0
    for p in tree(roots):
        st = _stat(p)
        if st:
            total += sum(int(x) for x in st[11:15])
    return total / CLK


def pss_kib(roots: list[int]) -> int:
    total = 0
    for p in tree(roots):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, this bench process's own CPU seconds) now."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    v = [int(x) for x in fields]
    busy = (sum(v[:8]) - v[3] - v[4]) / CLK  # all but idle and iowait
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy, own.ru_utime + own.ru_stime


def other_cpu_pct(start: tuple[float, float], server_cpu: float, seconds: float) -> float:
    """CPU used during a load by neither the server under test nor the load generator, as a
    percentage of one core: a disturbed run shows here instead of passing as a result."""
    busy, own = machine_busy()
    other = (busy - start[0]) - (own - start[1]) - server_cpu
    return max(other, 0.0) * 100 / max(seconds, 1e-9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


# -- targets ---------------------------------------------------------------------------------
class Target(Protocol):
    name: str
    smtp_port: int
    imaps_port: int

    def setup(self) -> None: ...
    def start(self, auth_cache: bool, cache_ttl: int = 60) -> None: ...
    def stop(self) -> None: ...
    def pids(self) -> list[int]: ...
    def maildirs(self) -> list[Path]: ...


class Esam:
    """``esam serve`` (a subprocess) from a bench config: fsync on, SQLite directory."""

    def __init__(self, root: Path, workers: int, hashes: dict[str, str], extra: dict[str, dict[str, Any]],
                 tree: Path = ROOT) -> None:
        self.root = root
        self.tree = tree  # the esam_mail checkout whose code serves (--tree)
        self.workers = workers
        self.hashes = hashes
        self.extra = extra
        self.name = f"esam_mail ({workers} worker{'s' if workers > 1 else ''})"
        self.smtp_port = free_port()
        self.imaps_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "esam.toml"

    def write_config(self, auth_cache: bool, cache_ttl: int = 60) -> None:
        sys.path.insert(0, str(ROOT))
        from esam_mail.config import _toml_key, _toml_value

        sections: dict[str, dict[str, Any]] = {
            "server": {"hostname": "bench.esam.test", "data_dir": str(self.root / "data"),
                       "log_file": str(self.root / "esam.log"), "workers": self.workers,
                       "shutdown_grace": 5.0},
            "mail": {"domain": DOMAIN},
            "listen": {"smtp": f"127.0.0.1:{self.smtp_port}", "submission": "", "submissions": "",
                       "imap": "", "imaps": f"127.0.0.1:{self.imaps_port}", "http": ""},
            "store": {"fsync": True},
            "auth": {"argon2_memory_kib": ARGON2[0], "argon2_time_cost": ARGON2[1],
                     "argon2_parallelism": ARGON2[2], "cache_seconds": cache_ttl if auth_cache else 0},
            # Postfix's smtpd has no per-session command cap; 16 long sessions send
            # ~1,000 commands each, over esam_mail's default of 1,000 (-> 421).
            "smtp": {"max_connections_per_ip": 1000, "max_commands": 1_000_000},
            "imap": {"max_connections_per_ip": 20000},
            "inbound": {"verify": False},
            "dkim": {"sign": False},
            "registration": {"agreement_file": str(ROOT / "conf" / "agreement.txt")},
        }
        for name, values in self.extra.items():
            sections.setdefault(name, {}).update(values)
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items())
        self.config.write_text("\n".join(lines) + "\n")

    def esam(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "esam_mail", "-c", str(self.config), *args],
                              cwd=self.tree, capture_output=True, text=True, check=True, **kw)

    def setup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.write_config(True)
        self.esam("init")
        script = (
            "import asyncio, json, sys\n"
            "from esam_mail import app, config\n"
            "cfg = config.load(sys.argv[1])\n"
            "async def go():\n"
            "    svc = app.build(cfg)\n"
            "    for u, h in json.loads(sys.argv[2]).items():\n"
            "        rec = await svc.directory.create_mailbox(u, h, kind='service')\n"
            "        svc.store.user(rec.login_norm).create()\n"
            "    await svc.close()\n"
            "asyncio.run(go())\n"
        )
        subprocess.run([sys.executable, "-c", script, str(self.config), json.dumps(self.hashes)],
                       cwd=self.tree, check=True)

    def start(self, auth_cache: bool, cache_ttl: int = 60) -> None:
        self.write_config(auth_cache, cache_ttl)
        ready = self.root / "ready.json"
        ready.unlink(missing_ok=True)
        log = open(self.root / "serve.out", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "esam_mail", "-c", str(self.config), "serve", "--no-init",
             "--ready-file", str(ready)], cwd=self.tree, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"esam serve did not start; see {self.root / 'serve.out'}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def maildirs(self) -> list[Path]:
        return [self.root / "data" / "mail" / u for u in USERS]  # the SMTP load's recipients


# -- loads -------------------------------------------------------------------------------------
def count_delivered(maildirs: list[Path]) -> int:
    n = 0
    for d in maildirs:
        for sub in ("new", "cur"):
            try:
                n += len(os.listdir(d / sub))
            except FileNotFoundError:
                pass
    return n


_DKIM_B = "".join(random.Random(1).choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                  for _ in range(344))


def message(i: int, size: int) -> bytes:
    """A message shaped like real inbound mail: two Received lines, a DKIM-Signature, MIME
    multipart/alternative (text + HTML, quoted-printable), padded to ``size`` bytes."""
    now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    rcpt = f"{USERS[i % len(USERS)]}@{DOMAIN}"
    boundary = f"=_bench_{i:08d}"
    head = (
        f"Received: from mail.client.test (mail.client.test [192.0.2.25])\r\n"
        f"\tby mx.client.test (Postfix) with ESMTPS id 4Q{i:08X}\r\n"
        f"\tfor <{rcpt}>; {now}\r\n"
        f"Received: from [10.20.30.{i % 250}] (unknown [10.20.30.{i % 250}])\r\n"
        f"\t(Authenticated sender: load@client.test)\r\n\tby mail.client.test (Postfix) with ESMTPSA; {now}\r\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=client.test;\r\n"
        f"\ts=bench; t={int(time.time())}; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        f"\th=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type;\r\n"
        + "".join(f"\t{_DKIM_B[k:k + 72]}\r\n" for k in range(0, 344, 72)).replace("\t", "\tb=", 1)
        + f"From: =?UTF-8?B?0JvQvtCw0LQg0KLQtdGB0YI=?= <load@client.test>\r\nTo: <{rcpt}>\r\n"
        f"Subject: =?UTF-8?B?0KHRh9C10YIg4oSWIHtpfQ==?= bench message {i}\r\n"
        f"Date: {now}\r\nMessage-ID: <bench.{i}.{time.time_ns()}@client.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog =D0=91 0123456789 abcdefghij.=\r\n"

    def build(room: int) -> bytes:
        room = max(room, 200)
        text = (line * (room // 2 // len(line) + 1))[: room // 2]
        html = ("<p>" + line * (room // 2 // len(line) + 1))[: room - room // 2]
        return (head + f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{text}\r\n"
                f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{html}\r\n--{boundary}--\r\n").encode()

    raw = build(size - len(head) - 300)
    return build(size - len(head) - 300 + size - len(raw))  # the length is linear in the room


class PipeliningClient:
    """A minimal ESMTP client that pipelines MAIL, RCPT and DATA in one write (RFC 2920),
    as Postfix's smtp client does to a server offering PIPELINING; aiosmtplib does not."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def _reply(self) -> int:
        assert self.r is not None
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":
                return int(line[:3])

    async def connect(self) -> None:
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        if await self._reply() != 220:
            raise ConnectionError("no greeting")
        self.w.write(b"EHLO client.test\r\n")
        if await self._reply() != 250:
            raise ConnectionError("EHLO refused")

    async def send(self, sender: str, rcpt: str, data: bytes) -> None:
        assert self.w is not None
        self.w.write(f"MAIL FROM:<{sender}> BODY=8BITMIME SIZE={len(data)}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        codes = [await self._reply() for _ in range(3)]
        if codes != [250, 250, 354]:
            if codes[2] == 354:  # MAIL or RCPT refused but DATA open: end it empty
                self.w.write(b".\r\n")
                await self._reply()
            raise RuntimeError(f"refused: {codes}")
        body = data.replace(b"\r\n.", b"\r\n..")
        self.w.write(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code = await self._reply()
        if code != 250:
            raise RuntimeError(f"DATA refused: {code}")

    async def quit(self) -> None:
        if self.w is not None:
            with contextlib.suppress(Exception):
                self.w.write(b"QUIT\r\n")
                await asyncio.wait_for(self._reply(), 5)
            self.w.close()


async def smtp_load(t: Target, count: int, conns: int, size: int, limit: float) -> dict[str, float]:
    base = count_delivered(t.maildirs())
    todo = list(range(count))
    lat: list[float] = []
    errors = 0
    cpu0, other0 = cpu_seconds(t.pids()), machine_busy()
    t0 = time.perf_counter()
    deadline = t0 + limit

    async def conn() -> None:
        nonlocal errors
        client = PipeliningClient(t.smtp_port)
        await client.connect()
        try:
            while todo and time.perf_counter() < deadline:
                i = todo.pop()
                msg = message(i, size)
                s = time.perf_counter()
                try:
                    await client.send("load@client.test", f"{USERS[i % len(USERS)]}@{DOMAIN}", msg)
                except (RuntimeError, ConnectionError, OSError):
                    errors += 1
                    await client.quit()  # a 421 or a dropped connection: reconnect
                    client = PipeliningClient(t.smtp_port)
                    await client.connect()
                    continue
                lat.append(time.perf_counter() - s)
        finally:
            await client.quit()

    sender = asyncio.gather(*(conn() for _ in range(conns)))
    accepted_at = None
    delivered = 0
    while True:
        await asyncio.sleep(0.1)
        if sender.done() and accepted_at is None:
            accepted_at = time.perf_counter()
        delivered = count_delivered(t.maildirs()) - base
        if (sender.done() and delivered >= len(lat)) or time.perf_counter() > deadline + 60:
            break
    done_at = time.perf_counter()
    await sender
    cpu = cpu_seconds(t.pids()) - cpu0
    assert accepted_at is not None
    return {
        "accepted": len(lat), "errors": errors, "delivered": delivered,
        "accepted_per_s": len(lat) / (accepted_at - t0),
        "delivered_per_s": delivered / (done_at - t0),
        "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
        "cpu_ms_per_msg": cpu * 1000 / max(delivered, 1),
        "other_cpu_pct": other_cpu_pct(other0, cpu, done_at - t0),
    }


async def imap_session(port: int, ctx: Any, user: str, bodies: int = 3) -> None:
    c = await Client.connect(port, ctx)
    try:
        await c.login(user, PASSWORD)
        await c.cmd("SELECT INBOX")
        lines = await c.cmd("UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
        uids = []
        for ln in lines:
            i = ln.find(b"UID ")
            if i >= 0:
                uids.append(int(ln[i + 4:].split(maxsplit=1)[0].rstrip(b")")))
        if uids:
            pick = random.sample(uids, min(bodies, len(uids)))
            seq = ",".join(map(str, pick))
            await c.cmd(f"UID FETCH {seq} (BODY.PEEK[])")
            await c.cmd(f"UID STORE {seq} +FLAGS (\\Seen)")
        await c.logout()
    finally:
        c.close()


async def login_once(port: int, ctx: Any, user: str) -> None:
    c = await Client.connect(port, ctx)
    try:
        await c.login(user, PASSWORD)
        await c.logout()
    finally:
        c.close()


async def loop_load(t: Target, clients: int, duration: float, what: str) -> dict[str, float]:
    ctx = client_tls()
    lat: list[float] = []
    errors = 0
    fn = imap_session if what == "imap" else login_once
    done: list[float] = []
    first: list[bool] = []  # the user's first session of this load (a cold folder on esam)
    seen: set[str] = set()
    cpu0, other0 = cpu_seconds(t.pids()), machine_busy()
    t0 = time.perf_counter()
    end = t0 + duration

    async def client(k: int) -> None:
        nonlocal errors
        rnd = random.Random(k)
        while time.perf_counter() < end:
            s = time.perf_counter()
            user = rnd.choice(USERS)
            cold = user not in seen
            seen.add(user)
            try:
                await asyncio.wait_for(fn(t.imaps_port, ctx, user), 30)
            except Exception:  # any failure counts as an error and the loop goes on
                errors += 1
                await asyncio.sleep(0.05)
                continue
            lat.append(time.perf_counter() - s)
            done.append(time.perf_counter() - t0)
            first.append(cold)

    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(t.pids()) - cpu0
    # the rate in each sixth of the run: a cache that expires mid-run shows as a dip
    width = duration / 6
    windows = [sum(1 for d in done if k * width <= d < (k + 1) * width) / width for k in range(6)]
    # where the tail comes from: each window's p99, and first sessions of a user apart
    win_lat = [[x for x, d in zip(lat, done, strict=True) if k * width <= d < (k + 1) * width] for k in range(6)]
    firsts = [x for x, f in zip(lat, first, strict=True) if f]
    rest = [x for x, f in zip(lat, first, strict=True) if not f]
    return {"per_s": len(lat) / elapsed, "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
            "errors": errors, "count": len(lat), "cpu_ms_per_op": cpu * 1000 / max(len(lat), 1),
            "other_cpu_pct": other_cpu_pct(other0, cpu, elapsed),
            "slowest_window_per_s": min(windows), "fastest_window_per_s": max(windows),
            "windows_per_s": [round(w, 1) for w in windows],
            "windows_p99_ms": [round(pct(w, 0.99) * 1000, 1) if w else 0.0 for w in win_lat],
            "first_sessions": len(firsts), "first_p99_ms": pct(firsts, 0.99) * 1000 if firsts else 0.0,
            "returning_p99_ms": pct(rest, 0.99) * 1000 if rest else 0.0}


STRESS_MSG = (b"From: <stress@client.test>\r\nSubject: stress\r\nMessage-ID: <%d@client.test>\r\n\r\n"
              b"The quick brown fox jumps over the lazy dog.\r\n")


# the stress mix: each kind's slice of [0, 1); --stress-kinds draws from the named slices only
STRESS_KINDS = {"noop": (0.00, 0.10), "select": (0.10, 0.16), "fetch-flags": (0.16, 0.30),
                "fetch-envelope": (0.30, 0.40), "fetch-body": (0.40, 0.46), "store": (0.46, 0.60),
                "search": (0.60, 0.68), "append": (0.68, 0.78), "copy": (0.78, 0.84),
                "expunge": (0.84, 0.90), "status": (0.90, 0.95), "list": (0.95, 1.00)}


async def stress_load(t: Target, clients: int, duration: float,
                      kinds: tuple[str, ...] = ()) -> dict[str, float]:
    """Random IMAP commands over TLS, as the clients of tests/protocol/imap/test_stress.py send
    them (without its model checks): clients share two users' INBOX and Archive and pick
    NOOP, SELECT, FETCH (flags, envelopes, bodies), STORE of flags and keywords, SEARCH, APPEND
    (LITERAL+), COPY, EXPUNGE of what they marked, STATUS and LIST at random.  Every ~25
    commands a client logs out and in again: the LOGIN latency under the load.  A tagged NO
    (a race the RFC allows) counts as a command; an exception counts as an error."""
    ctx = client_tls()
    login_lat: list[float] = []
    commands = errors = 0
    cpu0, other0 = cpu_seconds(t.pids()), machine_busy()
    t0 = time.perf_counter()
    end = t0 + duration

    async def client(k: int) -> None:
        nonlocal commands, errors
        rnd = random.Random(1000 + k)
        user = USERS[k % 2]
        c: Client | None = None
        exists = 0
        folder = "INBOX"

        async def run(text: str) -> list[bytes]:
            nonlocal commands, exists
            assert c is not None
            try:
                lines = await c.cmd(text)
            except IMAPError:
                lines = []
            commands += 1
            for ln in lines:
                if ln.endswith(b" EXISTS\r\n"):
                    exists = int(ln.split()[1])
                elif ln.endswith(b" EXPUNGE\r\n"):
                    exists = max(0, exists - 1)
            return lines

        while time.perf_counter() < end:
            try:
                if c is None:
                    c = await Client.connect(t.imaps_port, ctx)
                    s = time.perf_counter()
                    await c.login(user, PASSWORD)
                    login_lat.append(time.perf_counter() - s)
                    commands += 1
                    exists = 0
                    await run(f"SELECT {folder}")
                    n_here = 0
                    with contextlib.suppress(IMAPError):
                        await c.cmd("CREATE Archive")
                r = rnd.random()
                if kinds:  # profiling one kind: r falls in a slice of the named kinds
                    lo, hi = STRESS_KINDS[rnd.choice(kinds)]
                    r = lo + (hi - lo) * r
                seq = f"{rnd.randint(1, exists)}" if exists else "1"
                if r < 0.10:
                    await run("NOOP")
                elif r < 0.16:
                    folder = "Archive" if folder == "INBOX" else "INBOX"
                    exists = 0
                    await run(f"SELECT {folder}")
                elif r < 0.30 and exists:
                    await run(f"FETCH {max(1, exists - 20)}:* (UID FLAGS)")
                elif r < 0.40 and exists:
                    await run(f"FETCH {seq} (UID ENVELOPE RFC822.SIZE)")
                elif r < 0.46 and exists:
                    await run(f"FETCH {seq} (BODY.PEEK[])")
                elif r < 0.60 and exists:
                    flag = rnd.choice(["\\Seen", "\\Flagged", "\\Answered", "$Label1", "todo"])
                    await run(f"STORE {seq} {rnd.choice('+-')}FLAGS ({flag})")
                elif r < 0.68:
                    await run(rnd.choice(["UID SEARCH UNSEEN", "UID SEARCH FLAGGED", "SEARCH TEXT fox",
                                          "UID SEARCH SINCE 1-Jan-2020"]))
                elif r < 0.78:
                    body = STRESS_MSG % rnd.getrandbits(48)
                    flags = rnd.choice(["", "\\Seen", "$Label1 todo"])
                    await run(f"APPEND {folder} ({flags}) {{{len(body)}+}}\r\n" + body.decode())
                elif r < 0.84 and exists:
                    await run(f"COPY {seq} {'Archive' if folder == 'INBOX' else 'INBOX'}")
                elif r < 0.90 and exists > 40:  # keep the folders near their size
                    await run(f"STORE {seq} +FLAGS.SILENT (\\Deleted)")
                    await run("EXPUNGE")
                elif r < 0.95:
                    await run(f"STATUS {'Archive' if folder == 'INBOX' else 'INBOX'} (MESSAGES UNSEEN UIDNEXT)")
                else:
                    await run('LIST "" "*"')
                n_here += 1
                if n_here >= 25 + rnd.randint(0, 10):
                    await c.logout()
                    c = None
            except Exception:  # any failure counts as an error and the loop goes on
                errors += 1
                if c is not None:
                    c.close()
                c = None
                await asyncio.sleep(0.05)
        if c is not None:
            await c.logout()

    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(t.pids()) - cpu0
    return {"commands_per_s": commands / elapsed, "commands": commands, "errors": errors,
            "logins": len(login_lat), "login_p50_ms": pct(login_lat, 0.5) * 1000,
            "login_p99_ms": pct(login_lat, 0.99) * 1000, "cpu_ms_per_cmd": cpu * 1000 / max(commands, 1),
            "other_cpu_pct": other_cpu_pct(other0, cpu, elapsed)}


async def warm_up(t: Target, clients: int, rounds: int, limit: float) -> dict[str, float]:
    """Log every user in ``rounds`` times (bounded by ``limit`` s), unmeasured: the
    loads below measure the steady state of a server whose users log in again and
    again (mail clients reconnect), not the first login after a restart."""
    ctx = client_tls()
    todo = [u for _ in range(rounds) for u in USERS]
    end = time.perf_counter() + limit
    t0 = time.perf_counter()

    async def client() -> None:
        while todo and time.perf_counter() < end:
            user = todo.pop()
            try:
                await asyncio.wait_for(login_once(t.imaps_port, ctx, user), max(1.0, end - time.perf_counter()))
            except Exception:  # any failure counts as an error and the loop goes on
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client() for _ in range(clients)))
    return {"seconds": time.perf_counter() - t0, "left": len(todo)}


async def idle_load(t: Target, n: int, pushes: int, limit: float) -> dict[str, float]:
    import aiosmtplib

    ctx = client_tls()
    roots = t.pids()
    pss0 = pss_kib(roots)
    sessions: dict[str, list[Client]] = {u: [] for u in IDLE_USERS}
    sem = asyncio.Semaphore(64)
    errors = 0
    deadline = time.perf_counter() + limit

    async def open_one(i: int) -> None:
        nonlocal errors
        user = IDLE_USERS[i % len(IDLE_USERS)]
        async with sem:
            if time.perf_counter() > deadline:
                errors += 1
                return
            try:
                c = await asyncio.wait_for(Client.connect(t.imaps_port, ctx), 60)
                await c.login(user, PASSWORD)
                await c.cmd("SELECT INBOX")
                await c.idle()
            except Exception:  # any failure counts as an error and the loop goes on
                errors += 1
                return
            sessions[user].append(c)

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one(i) for i in range(n)))
    setup_s = time.perf_counter() - t0
    opened = sum(len(v) for v in sessions.values())
    await asyncio.sleep(3)
    pss1 = pss_kib(t.pids())
    delays: list[float] = []
    missed = 0
    users = random.Random(7).sample(IDLE_USERS, min(pushes, len(IDLE_USERS)))
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=t.smtp_port, timeout=60, start_tls=False,
                           local_hostname="client.test")
    await smtp.connect()
    for k, user in enumerate(users):
        watch = sessions[user]
        for c in watch:
            c.exists_at.clear()
            c.exists_event.clear()
        await smtp.sendmail("load@client.test", [f"{user}@{DOMAIN}"], message(10**6 + k, 2048))
        sent = time.perf_counter()
        waits = [asyncio.wait_for(c.exists_event.wait(), 10) for c in watch]
        res = await asyncio.gather(*waits, return_exceptions=True)
        for c, r in zip(watch, res, strict=True):
            if isinstance(r, BaseException) or not c.exists_at:
                missed += 1
            else:
                delays.append(c.exists_at[0][0] - sent)
        await asyncio.sleep(0.2)
    await smtp.quit()
    for v in sessions.values():
        for c in v:
            c.close()
    await asyncio.sleep(1)
    return {
        "opened": opened, "errors": errors, "setup_s": setup_s,
        "pss_before_mib": pss0 / 1024, "pss_mib": pss1 / 1024,
        "kib_per_conn": (pss1 - pss0) / max(opened, 1),
        "push_p50_ms": pct(delays, 0.5) * 1000, "push_p99_ms": pct(delays, 0.99) * 1000,
        "push_missed": missed, "push_samples": len(delays),
    }


# -- driver --------------------------------------------------------------------------------------
PHASES = ("smtp", "warmup", "imap", "login", "stress", "kinds", "idle", "nocache")
# "kinds" (each command kind of the stress alone, for profiling) only when asked for
DEFAULT_PHASES = tuple(p for p in PHASES if p != "kinds")


@dataclass
class Plan:
    smtp_count: int = 5000
    smtp_conns: int = 16
    size: int = 10 * 1024
    imap_clients: int = 16
    imap_seconds: float = 20.0
    login_seconds: float = 45.0
    idle: list[int] = field(default_factory=lambda: [1000, 10000])
    pushes: int = 20
    warmup_seconds: float = 90.0
    # auth cache lifetime on both servers: shorter than the login loop, so the loop crosses
    # it and a cache that lets active users expire shows as a slow window; longer than the
    # time between one user's sessions in the IMAP loop (at 4 s, with ~20 sessions/s over 100
    # users, entries expired there and every login paid argon2id: 39 ms CPU each)
    cache_ttl: int = 20
    stress_clients: int = 10
    stress_seconds: float = 20.0
    stress_kinds: tuple[str, ...] = ()  # --stress-kinds: profile some command kinds alone
    kind_seconds: float = 6.0  # the "kinds" phase: each kind of the mix alone this long
    # which loads to run (--phases); "warmup" matters for the login loads (first logins rehash)
    phases: tuple[str, ...] = DEFAULT_PHASES
    # --barrier: before the stress, wait until this many bench processes reached it
    barrier: tuple[Path, int] | None = None


async def barrier(path: Path, parties: int, limit: float = 600.0) -> None:
    """Wait until ``parties`` bench processes have reached ``path`` (each leaves a
    ``<path>.<pid>`` file): two builds run at the same time start their stress together,
    so both meet the same machine (bench/same_time.sh)."""
    Path(f"{path}.{os.getpid()}").touch()
    end = time.perf_counter() + limit
    while len(list(path.parent.glob(path.name + ".*"))) < parties:
        if time.perf_counter() > end:
            raise RuntimeError(f"barrier {path}: fewer than {parties} bench processes after {limit:.0f} s")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def bench_target(t: Target, plan: Plan, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"== {t.name}: setup")
    t.setup()
    # The setup deleted the last run's folders (tens of thousands of files).  On ext4
    # without a journal (this machine kind's root) every file creation skips the inodes
    # deleted in the last minute, or the last five while their inode table blocks are
    # dirty: written out now, the next run's creations do not pay for the last run's
    # deletions (they did, for both servers, and it showed as noise between runs).
    os.sync()
    t.start(auth_cache=True, cache_ttl=plan.cache_ttl)
    try:
        await asyncio.sleep(1)
        ph = plan.phases
        if "smtp" in ph:
            log(f"== {t.name}: SMTP {plan.smtp_count} x {plan.size} B over {plan.smtp_conns} connections")
            out["smtp"] = await smtp_load(t, plan.smtp_count, plan.smtp_conns, plan.size, limit=600)
            log(f"   {json.dumps(out['smtp'])}")
        if "warmup" in ph:
            log(f"== {t.name}: warm-up logins (unmeasured)")
            out["warmup"] = await warm_up(t, plan.imap_clients, 3, plan.warmup_seconds)
            log(f"   {json.dumps(out['warmup'])}")
        if "imap" in ph:
            log(f"== {t.name}: IMAP sessions, {plan.imap_clients} clients, {plan.imap_seconds:.0f} s")
            out["imap"] = await loop_load(t, plan.imap_clients, plan.imap_seconds, "imap")
            log(f"   {json.dumps(out['imap'])}")
        if "login" in ph:
            log(f"== {t.name}: logins (auth cache on, {plan.cache_ttl} s), {plan.login_seconds:.0f} s")
            out["login_cache"] = await loop_load(t, plan.imap_clients, plan.login_seconds, "login")
            log(f"   {json.dumps(out['login_cache'])}")
        if "stress" in ph and plan.barrier is not None:
            await barrier(*plan.barrier)
        if "stress" in ph:
            log(f"== {t.name}: stress, {plan.stress_clients} clients of random commands, "
                f"{plan.stress_seconds:.0f} s")
            out["stress"] = await stress_load(t, plan.stress_clients, plan.stress_seconds, plan.stress_kinds)
            log(f"   {json.dumps(out['stress'])}")
        if "kinds" in ph:  # each kind of the mix alone: where the CPU per command goes
            for kind in STRESS_KINDS:
                log(f"== {t.name}: stress of {kind} only, {plan.kind_seconds:.0f} s")
                out[f"kind_{kind}"] = await stress_load(t, plan.stress_clients, plan.kind_seconds, (kind,))
                log(f"   {json.dumps(out[f'kind_{kind}'])}")
        for n in plan.idle if "idle" in ph else []:
            log(f"== {t.name}: {n} IDLE sessions")
            out[f"idle_{n}"] = await idle_load(t, n, plan.pushes, limit=600)
            log(f"   {json.dumps(out[f'idle_{n}'])}")
    finally:
        t.stop()
    if "nocache" not in plan.phases:
        return out
    t.start(auth_cache=False)
    try:
        await asyncio.sleep(1)
        log(f"== {t.name}: logins (auth cache off)")
        out["login_nocache"] = await loop_load(t, plan.imap_clients, plan.login_seconds, "login")
        log(f"   {json.dumps(out['login_nocache'])}")
    finally:
        t.stop()
    return out


ROWS = [
    ("SMTP delivered msgs/s (in the Maildir)", "smtp", "delivered_per_s", True),
    ("SMTP accepted msgs/s (final 250)", "smtp", "accepted_per_s", True),
    ("SMTP latency p50, ms (MAIL FROM -> 250)", "smtp", "p50_ms", False),
    ("SMTP latency p99, ms", "smtp", "p99_ms", False),
    ("SMTP server CPU ms per message", "smtp", "cpu_ms_per_msg", False),
    ("SMTP load: other CPU, % of a core (disturbance)", "smtp", "other_cpu_pct", False),
    ("IMAP sessions/s", "imap", "per_s", True),
    ("IMAP session p99, ms", "imap", "p99_ms", False),
    ("IMAP server CPU ms per session", "imap", "cpu_ms_per_op", False),
    ("IMAP load: other CPU, % of a core", "imap", "other_cpu_pct", False),
    ("Logins/s, auth cache on", "login_cache", "per_s", True),
    ("Login p99, ms, auth cache on", "login_cache", "p99_ms", False),
    ("Login server CPU ms, auth cache on", "login_cache", "cpu_ms_per_op", False),
    ("Logins/s in the slowest sixth of the loop (crosses the cache TTL)", "login_cache", "slowest_window_per_s", True),
    ("Logins/s in the fastest sixth", "login_cache", "fastest_window_per_s", True),
    ("Stress: IMAP commands/s (10 clients, random commands)", "stress", "commands_per_s", True),
    ("Stress: LOGIN p50, ms", "stress", "login_p50_ms", False),
    ("Stress: LOGIN p99, ms", "stress", "login_p99_ms", False),
    ("Stress: server CPU ms per command", "stress", "cpu_ms_per_cmd", False),
    ("Stress: other CPU, % of a core", "stress", "other_cpu_pct", False),
    ("Logins/s, auth cache off", "login_nocache", "per_s", True),
    ("Login p99, ms, auth cache off", "login_nocache", "p99_ms", False),
]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per load and measure, the median over the rounds."""
    import statistics

    out: dict[str, Any] = {}
    for sect in runs[0]:
        keys = runs[0][sect]
        out[sect] = {k: statistics.median(r[sect][k] for r in runs if sect in r and k in r[sect])
                     for k in keys if isinstance(keys[k], (int, float))}
    return out


def table(results: dict[str, dict[str, Any]], plan: Plan) -> str:
    names = list(results)
    esam = next((n for n in names if n.startswith("esam")), None)
    base = next((n for n in names if not n.startswith("esam")), None)
    rows = list(ROWS)
    if "kinds" in plan.phases:
        for kind in STRESS_KINDS:
            rows += [(f"Stress of {kind} only: commands/s", f"kind_{kind}", "commands_per_s", True),
                     (f"Stress of {kind} only: server CPU ms per command", f"kind_{kind}", "cpu_ms_per_cmd",
                      False)]
    for n in plan.idle:
        rows += [
            (f"IDLE {n:,}: server PSS, MiB", f"idle_{n}", "pss_mib", False),
            (f"IDLE {n:,}: KiB per connection", f"idle_{n}", "kib_per_conn", False),
            (f"IDLE {n:,}: push delay p50, ms (250 -> EXISTS)", f"idle_{n}", "push_p50_ms", False),
            (f"IDLE {n:,}: push delay p99, ms", f"idle_{n}", "push_p99_ms", False),
        ]
    head = "| measure | " + " | ".join(names) + (" | esam / baseline |" if esam and base else " |")
    lines = [head, "|" + "---|" * (len(names) + 1 + (1 if esam and base else 0))]
    for label, sect, key, higher in rows:
        vals = [results[n].get(sect, {}).get(key) for n in names]
        cells = ["-" if v is None else f"{v:,.1f}" for v in vals]
        line = f"| {label} | " + " | ".join(cells)
        if esam and base:
            a = results[esam].get(sect, {}).get(key)
            b = results[base].get(sect, {}).get(key)
            ratio = "-"
            if a is not None and b:
                r = a / b
                ratio = f"{r:.2f}x" + (" (higher is better)" if higher else " (lower is better)")
            line += f" | {ratio}"
        lines.append(line + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal"))) / 1024 / 1024
    return (f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 messages, shorter loops, 1,000 IDLE only")
    ap.add_argument("--only", choices=["esam", "baseline"], help="run one side only")
    ap.add_argument("--workers", type=int, default=2, help="esam serve --workers (default 2)")
    ap.add_argument("--dir", default="/var/tmp/esam-bench", help="work folder (wiped)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                    help="extra esam config, e.g. --set server.uvloop=true")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternating rounds (esam, baseline, baseline, esam, ...); the table shows medians")
    ap.add_argument("--scheme", choices=["sha512-crypt", "argon2id"], default="sha512-crypt",
                    help="users' imported password hashes: SHA512-CRYPT (rounds=5000) as a competent admin "
                    "runs Dovecot (esam rehashes to its argon2id at first login), or the same argon2id string "
                    "for both")
    ap.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                    help=f"comma-separated loads to run, in this order whatever the list: {','.join(PHASES)} "
                    "(e.g. smtp,warmup,login,stress for the login and stress figures only)")
    ap.add_argument("--tree", default=None, metavar="PATH",
                    help="serve the esam_mail code of this checkout (e.g. a git worktree of an older "
                    "commit; default: this one): same loads and bench code for both builds")
    ap.add_argument("--stress-seconds", type=float, default=None,
                    help="length of the stress (default 20 s, 8 s with --quick)")
    ap.add_argument("--barrier", default=None, metavar="PATH[:N]",
                    help="before the stress, wait until N (default 2) bench processes reached PATH "
                    "(two builds at the same time: bench/same_time.sh)")
    ap.add_argument("--stress-kinds", default="",
                    help=f"comma-separated command kinds the stress draws from, for profiling one kind "
                    f"(default: the whole mix): {','.join(STRESS_KINDS)}")
    args = ap.parse_args()
    kinds = tuple(k for k in args.stress_kinds.split(",") if k)
    if unknown_kinds := set(kinds) - set(STRESS_KINDS):
        ap.error(f"unknown stress kinds: {', '.join(sorted(unknown_kinds))}")
    phases = tuple(p for p in args.phases.split(",") if p)
    if unknown := set(phases) - set(PHASES):
        ap.error(f"unknown phases: {', '.join(sorted(unknown))}")
    plan = Plan(phases=phases, stress_kinds=kinds)
    if args.quick:
        plan = Plan(smtp_count=1000, imap_seconds=8, login_seconds=24, idle=[1000], pushes=10, warmup_seconds=45,
                    cache_ttl=10, stress_seconds=8, phases=phases, stress_kinds=kinds)
    if args.stress_seconds is not None:
        if not args.stress_seconds > 0:
            ap.error("--stress-seconds: more than 0")
        plan = dataclasses.replace(plan, stress_seconds=args.stress_seconds)
    if args.barrier:
        where, _, n = args.barrier.partition(":")
        if n and not (n.isdigit() and int(n) >= 2):
            ap.error("--barrier: N is a whole number, at least 2")
        plan = dataclasses.replace(plan, barrier=(Path(where), int(n) if n else 2))
    tree = Path(args.tree).resolve() if args.tree else ROOT
    if not (tree / "esam_mail" / "__init__.py").is_file():
        ap.error(f"--tree: {tree} is not an esam_mail checkout")
    raise_nofile()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    extra: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, val = item.partition("=")
        sect, _, name = key.partition(".")
        extra.setdefault(sect, {})[name] = json.loads(val)

    def log(msg: str) -> None:
        print(msg, flush=True)

    sys.path.insert(0, str(ROOT))
    from passlib.hash import sha512_crypt

    from esam_mail.directory.passwords import PasswordHasher

    if args.scheme == "argon2id":
        hashes = {u: PasswordHasher(*ARGON2).hash(PASSWORD) for u in USERS}
    else:  # each user their own salt, as imported from a real passwd-file
        hashes = {u: sha512_crypt.using(rounds=5000).hash(PASSWORD) for u in USERS}
    hashes.update({u: sha512_crypt.using(rounds=5000).hash(PASSWORD) for u in IDLE_USERS})
    targets: list[Target] = []
    if args.only != "baseline":
        targets.append(Esam(work / "esam", args.workers, hashes, extra, tree))
    if args.only != "esam":
        ensure_installed()
        cert = work / "cert"
        cert.mkdir(exist_ok=True)
        from esam_mail import tls

        tls.ensure_dev_certificate(cert / "cert.pem", cert / "key.pem", "bench.test")
        ports = {"smtp": free_port(), "imaps": free_port(), "lmtp": free_port()}
        targets.append(Baseline(work / "baseline", hashes, DOMAIN, ports,
                                cert / "cert.pem", cert / "key.pem"))
    started = dt.datetime.now(dt.UTC)
    rounds: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for r in range(max(1, args.rounds)):
        for t in (targets if r % 2 == 0 else list(reversed(targets))):
            log(f"#### round {r + 1} of {args.rounds}: {t.name}")
            rounds[t.name].append(asyncio.run(bench_target(t, plan, log)))
    results = {name: median_of(runs) for name, runs in rounds.items()}
    tab = table(results, plan)
    print()
    print(tab)
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=2))
    if not args.no_write:
        write_doc(tab, rounds, plan, args, started, tree)
    return 0


def hash_note(scheme: str) -> str:
    if scheme == "argon2id":
        return (f"the same argon2id string (m={ARGON2[0]} KiB, t={ARGON2[1]}, p={ARGON2[2]}) for both, "
                "Dovecot verifying it with libsodium")
    return ("SHA512-CRYPT (rounds=5000, a salt per user) imported into both, as a competent admin "
            f"runs Dovecot; esam_mail rehashes each to its argon2id (m={ARGON2[0]} KiB, t={ARGON2[1]}) "
            "at the first login (the unmeasured warm-up)")


def write_doc(tab: str, results: dict[str, list[dict[str, Any]]], plan: Plan, args: argparse.Namespace,
              started: dt.datetime, tree: Path) -> None:
    """``tree``: the checkout whose esam_mail served (--tree); its commit is named."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                            text=True).stdout.strip()
    cmd = " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]])
    section = (
        f"## Run of {started:%Y-%m-%d %H:%M} UTC\n\n"
        f"* command: `{cmd}` (esam_mail {commit})\n"
        f"* machine: {machine()}\n"
        f"* baseline: {versions() if args.only != 'esam' else '-'}\n"
        f"* password hashes: {hash_note(args.scheme)}; auth cache: esam_mail "
        f"{plan.cache_ttl} s (shared by its workers, renewed for active users) / Dovecot "
        f"auth_cache_size=10M, ttl {plan.cache_ttl} s, or both off; the login loop "
        f"({plan.login_seconds:.0f} s) crosses that lifetime\n"
        f"* rounds: {args.rounds}, alternating; the table shows each measure's median, raw rounds below\n"
        f"* esam_mail: `--workers {args.workers}`, store.fsync = true, SQLite directory, "
        f"extra settings {args.set or 'none'}\n"
        f"* loads: SMTP {plan.smtp_count} x {plan.size // 1024} KiB over {plan.smtp_conns} connections; "
        f"IMAP {plan.imap_clients} clients x {plan.imap_seconds:.0f} s; logins {plan.login_seconds:.0f} s; "
        f"IDLE {', '.join(f'{n:,}' for n in plan.idle)}\n\n{tab}\n\n"
        f"<details><summary>raw results</summary>\n\n```json\n{json.dumps(results, indent=1)}\n```\n"
        f"</details>\n\n"
    )
    doc = ROOT / "docs" / "benchmarks.md"
    marker = "<!-- runs: newest first -->\n"
    text = doc.read_text() if doc.exists() else ""
    if marker not in text:
        text = text.rstrip() + ("\n\n" if text else "") + marker
    doc.write_text(text.replace(marker, marker + "\n" + section, 1))
    print(f"wrote {doc}")


if __name__ == "__main__":
    raise SystemExit(main())
