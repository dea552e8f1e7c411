"""Loop-lag guards (issue 14): no IMAP request may freeze the shared event loop.

The server (SMTP, IMAP and HTTP on one loop, as ``esam serve`` runs them) lives in
this process; the clients are subprocesses (tests/protocol/loadclient.py) so their
CPU never competes with the server's and the figures are the server's own.

- A 10,000-message INBOX: while one session runs SELECT (first sync), FETCH 1:*
  (ENVELOPE BODYSTRUCTURE) uncached, SEARCH BODY and STORE 1:*, SMTP greetings on
  the MX stay under 50 ms (they waited up to 2.06 s before the mailbox service).
- One 64 KiB hostile FETCH/SEARCH/STORE on a 1,023-message folder: RSS grows by
  less than 20 MB and another session's NOOP answers within 100 ms.
- APPEND literals are spooled: a 50 MB APPEND, and four sessions each holding a
  half-sent 50 MB literal, grow RSS by less than 20 MB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from esam_mail import metrics
from esam_mail.store.maildir import new_key
from tests.conftest import ROOT
from tests.protocol.harness import Running

# latency measured against a fixed bound: run alone, after the parallel workers (scripts/test.sh)
pytestmark = [pytest.mark.protocol, pytest.mark.solo]

PASSWORD = "correct horse"
MB = 1024 * 1024


def message(i: int) -> bytes:
    """A realistic multipart message; every 100th body mentions the needle."""
    word = "needle" if i % 100 == 0 else "hay"
    return (
        f"From: Sender {i} <sender{i}@example.org>\r\n"
        f"To: Alice <alice@esam.test>, Bob <bob{i % 7}@example.net>\r\n"
        f"Subject: =?UTF-8?B?0J/RgNC40LLQtdGC?= message {i}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:{i % 60:02d} -0800\r\n"
        f"Message-ID: <{i}.lag@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{'Lorem ipsum dolor sit amet. ' * 20}{word}\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"<p>{'Lorem ipsum dolor sit amet. ' * 20}</p>\r\n"
        "--b1--\r\n"
    ).encode()


def fill(folder_dir: Path, count: int) -> None:
    """Drop ``count`` messages straight into new/, as a delivery agent would."""
    new = folder_dir / "new"
    for i in range(1, count + 1):
        data = message(i)
        (new / new_key(len(data))).write_bytes(data)


def rss_bytes(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssPeak:
    """Samples this process's RSS every 10 ms while active."""

    def __init__(self) -> None:
        self.base = rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def client(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.protocol.loadclient", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, text=True,
    )


def result(p: subprocess.Popen[str], timeout: float = 600) -> object:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


class Probe:
    """A latency probe subprocess, stopped by creating its stop file."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        self.stop_file = tmp / f"{name}.stop"
        self.proc = client(*args, str(self.stop_file))

    def finish(self) -> list[float]:
        self.stop_file.touch()
        values = result(self.proc, timeout=60)
        assert isinstance(values, list) and values
        self.stamped = [(float(v[0]), float(v[1])) if isinstance(v, list) else (0.0, float(v))
                        for v in values]
        return [v for _, v in self.stamped]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


def summary(values: list[float]) -> str:
    return (f"n={len(values)} median={statistics.median(values) * 1000:.1f}ms "
            f"p95={p95(values) * 1000:.1f}ms max={max(values) * 1000:.1f}ms")


@pytest.fixture
def server(running: Running) -> Iterator[Running]:
    running.add_mailbox("alice", PASSWORD)
    running.add_mailbox("bob", PASSWORD)
    yield running


def test_big_mailbox_commands_do_not_delay_smtp_greetings(server: Running, tmp_path: Path) -> None:
    fill(server.services.store.user("alice").path, 10_000)
    smtp, imaps = str(server.ports["smtp"]), str(server.ports["imaps"])
    idle = Probe(tmp_path, "baseline", "smtp-probe", smtp)
    time.sleep(1.0)
    baseline = idle.finish()
    lag = metrics.LOOP_LAG_SECONDS
    lag_before = (lag.count(), lag.count_above(0.05), lag.count_above(0.25))
    started = time.monotonic()
    probe = Probe(tmp_path, "loaded", "smtp-probe", smtp)
    runs = result(client(
        "imap-run", imaps, "alice", PASSWORD,
        "SELECT INBOX", "FETCH 1:* (ENVELOPE BODYSTRUCTURE)", "SEARCH BODY needle",
        "STORE 1:* +FLAGS (\\Flagged)",
    ))
    loaded = probe.finish()
    elapsed = time.monotonic() - started
    # the server's own view (esam_event_loop_lag_seconds, a timer every 0.25 s on its
    # loop): how often it ran late, as against what the probe's clock saw
    samples, late, frozen = (now - then for now, then in zip(
        (lag.count(), lag.count_above(0.05), lag.count_above(0.25)), lag_before, strict=True))
    assert isinstance(runs, list)
    report = "; ".join(f"{r[1].split(' ')[1]} {r[0]:.2f}s" for r in runs)
    print(f"\nbaseline {summary(baseline)}\nunder load {summary(loaded)}\nIMAP: {report}\n"
          f"server loop lag: {samples} samples, {late} over 50 ms, {frozen} over 250 ms")
    assert all(" OK " in r[1] for r in runs), runs
    assert len(loaded) >= 20, "the IMAP load ended before the probe got going"
    # 95 % of greetings within 50 ms, and no freeze: before the mailbox service the
    # MX waited up to 2.06 s.  (The max allows for a scheduler hiccup on a busy CI
    # machine; the idle baseline of the same run is printed beside it.)
    assert p95(loaded) < 0.050, f"SMTP greeting delayed: {summary(loaded)} (baseline {summary(baseline)})"
    assert max(loaded) < 0.250, f"SMTP greeting frozen: {summary(loaded)} (baseline {summary(baseline)})"
    # the timer ticked through the load (a run that took 4.8 s gave 19 samples: a fixed
    # "at least 20" failed for a fast run, not a slow loop)
    assert samples >= 0.6 * elapsed / 0.25, f"server loop lag: {samples} samples in {elapsed:.1f} s"
    assert frozen == 0, f"server loop lag: {frozen} of {samples} samples over 250 ms"


def test_hostile_64k_commands_stay_small_and_others_keep_answering(
    server: Running, tmp_path: Path
) -> None:
    fill(server.services.store.user("alice").path, 1023)
    imaps = str(server.ports["imaps"])
    assert result(client("imap-run", imaps, "alice", PASSWORD, "SELECT INBOX"))[0][1].startswith("c2 OK")
    ranges = ",".join(["1:*"] * 15_990)  # 64 KiB of ranges, each the whole folder
    fetch = f"UID FETCH {ranges} (FLAGS)"
    store = f"UID STORE {ranges} +FLAGS (\\Seen)"
    search = "SEARCH " + " ".join(["1:*"] * 999)  # the most keys allowed, each matching all
    search_big = "SEARCH " + " ".join(["1:*"] * 16_000)  # refused: BAD [LIMIT]
    probe = Probe(tmp_path, "noop", "imap-probe", imaps, "bob", PASSWORD)
    with RssPeak() as rss:
        runs = result(client("imap-run", imaps, "alice", PASSWORD,
                             "SELECT INBOX", fetch, store, search, search_big))
    noops = probe.finish()
    assert isinstance(runs, list)
    print(f"\nhostile: {[(round(r[0], 2), r[1][:40]) for r in runs]}\n"
          f"RSS growth {rss.growth / MB:.1f} MB; other session NOOP {summary(noops)}")
    assert [r[1].split(" ")[1] for r in runs] == ["OK", "OK", "OK", "OK", "BAD"], runs
    assert "[LIMIT]" in runs[4][1]
    assert rss.growth < 20 * MB
    assert p95(noops) < 0.100, summary(noops)
    assert max(noops) < 0.250, summary(noops)


def test_append_literals_are_spooled_not_held_in_ram(server: Running) -> None:
    imaps = str(server.ports["imaps"])
    size = 50 * MB
    with RssPeak() as one:
        reply = result(client("imap-append", imaps, "alice", PASSWORD, str(size), str(size)))
    assert isinstance(reply, str) and " OK [APPENDUID " in reply, reply
    # four sessions each announce 50 MB and send 20 MB of it, then wait
    with RssPeak() as four:
        held = [client("imap-append", imaps, "alice", PASSWORD, str(size), str(20 * MB),
                       stdin=subprocess.PIPE) for _ in range(4)]
        for p in held:
            assert p.stderr is not None
            assert p.stderr.readline().strip() == "sent"
        time.sleep(0.5)  # let the server drain the socket buffers
        for p in held:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(60)
    user_tmp = server.services.store.user("alice").path / "tmp"
    deadline = time.monotonic() + 10
    while any(user_tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the aborted literals' spool files are removed
    print(f"\nRSS growth: one 50 MB APPEND {one.growth / MB:.1f} MB; "
          f"four half-sent 50 MB literals {four.growth / MB:.1f} MB")
    assert one.growth < 20 * MB
    assert four.growth < 20 * MB
    assert not list(user_tmp.iterdir())
