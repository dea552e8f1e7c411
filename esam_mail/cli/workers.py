"""``esam serve --workers N``: a small pre-fork supervisor.

The supervisor owns no event loop and never imports Twisted's reactor.  It

1. *reserves* every configured listening address with a socket that has
   ``SO_REUSEPORT`` set and is bound but **not** listening.  With port 0 in the
   config (tests) the kernel picks the port here, once, so every worker gets the
   same concrete port; a reserved, non-listening socket receives no connections;
2. forks N workers.  Each one runs :func:`esam_mail.app.run` with those concrete
   ports and ``reuse_port=True``: every worker has its own listening socket on
   each SMTP and HTTP port and the kernel spreads new connections over them; the
   IMAP ports (:data:`SHARED_LISTENERS`) are one listening socket made here, before
   the fork, that every worker accepts from, one connection per wake-up, so a
   connection goes to a worker with time for it (a stalled or busy worker takes
   none; restarted workers inherit it, so nothing queued on it is lost);
3. writes the ready file (``{"pid", "ports", "workers"}``) once every worker has
   written its own (``<data_dir>/run/worker-<i>.ready``);
4. restarts a worker that dies (with a growing back-off when one keeps crashing);
   a worker that dies before the first ready file makes ``serve`` fail instead;
5. forwards SIGTERM/SIGINT to the workers (graceful stop, ``server.shutdown_grace``)
   and turns SIGHUP into a rolling restart: the config file is read again, a new
   worker is started next to each old one and the old one is stopped once the new
   one listens, so no connection is refused.  Listening addresses keep the ports
   reserved at start (changing ``[listen]`` needs a full restart).

Everything the workers share lives in the store, the spool and the directory:
the spool's ``flock`` claims make sure one queue entry is delivered by one queue
runner, and IDLE notifications cross processes through the notifier
(unix datagrams in ``<data_dir>/run/notify``, or PostgreSQL LISTEN/NOTIFY).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from esam_mail import config as config_mod
from esam_mail import fsio
from esam_mail.config import Config, parse_hostport
from esam_mail.errors import ConfigError
from esam_mail.log import event
from esam_mail.sockets import forget_inherited, reuseport_socket, share_listening

log = logging.getLogger("esam_mail.workers")

#: Listener keys of ``[listen]`` (all optional: "" disables one).
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "http")
#: Which listeners belong to which role of ``server.roles`` / ``--roles``.
ROLE_LISTENERS = {
    "smtp": ("smtp", "submission", "submissions"),
    "imap": ("imap", "imaps"),
    "http": ("http",),
}
_POLL = 0.05
_READY_TIMEOUT = 120.0
_STABLE_AFTER = 10.0  # a worker that lived this long resets the crash back-off


def _fmt_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Listeners whose one listening socket the supervisor makes and every worker accepts
# from (see :func:`esam_mail.sockets.share_listening`); the others get a reserved socket
# here and one SO_REUSEPORT listener per worker.
SHARED_LISTENERS = frozenset({"imap", "imaps"})


def _is_listening(s: socket.socket) -> bool:
    return bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def reserve_ports(cfg: Config) -> tuple[dict[str, int], list[socket.socket]]:
    """Bind (not listen) an SO_REUSEPORT socket on every configured listener.

    Returns the concrete ports (port 0 resolved by the kernel) and the sockets,
    which the supervisor keeps open so that the ports stay ours across restarts.
    """
    ports: dict[str, int] = {}
    socks: list[socket.socket] = []
    try:
        for name in LISTENERS:
            value = getattr(cfg.listen, name)
            if not value:
                continue
            host, port = parse_hostport(value)
            s = reuseport_socket(host, port)
            socks.append(s)
            ports[name] = s.getsockname()[1]
            if name in SHARED_LISTENERS:
                share_listening(host, ports[name], s)
    except BaseException:
        forget_inherited()
        for s in socks:
            s.close()
        raise
    return ports, socks


def worker_config(cfg: Config, ports: dict[str, int]) -> Config:
    """``cfg`` with every enabled listener on its concrete (reserved) port."""
    listen = {}
    for name, port in ports.items():
        host, _ = parse_hostport(getattr(cfg.listen, name))
        listen[name] = _fmt_hostport(host, port)
    return dataclasses.replace(cfg, listen=dataclasses.replace(cfg.listen, **listen))


class _WorkerFormatter(logging.Formatter):
    """Adds ``pid=`` and ``worker=`` to every line of a worker (wraps the real formatter)."""

    def __init__(self, inner: logging.Formatter | None, index: int) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.suffix = f" pid={os.getpid()} worker={index}"

    def format(self, record: logging.LogRecord) -> str:
        return self.inner.format(record) + self.suffix


@dataclass
class _Worker:
    index: int
    pid: int
    ready_file: Path
    started: float
    ready: bool = False
    stopping: bool = False


@dataclass
class Supervisor:
    """Forks and watches the workers (see the module docstring)."""

    cfg: Config
    count: int
    ready_file: str | None = None
    #: process groups (``server.roles``); each gets ``count`` workers
    groups: list[frozenset[str]] = field(default_factory=lambda: [frozenset(ROLE_LISTENERS)])
    ports: dict[str, int] = field(default_factory=dict)
    workers: dict[int, _Worker] = field(default_factory=dict)  # pid -> worker
    _reserved: list[socket.socket] = field(default_factory=list)
    _stop: bool = False
    _reload: bool = False
    _crashes: dict[int, int] = field(default_factory=dict)  # slot -> recent crash count
    _generation: int = 0

    @property
    def run_dir(self) -> Path:
        return self.cfg.data_dir / "run"

    # -- signals --------------------------------------------------------------------
    def _on_stop(self, signum: int, frame: object) -> None:
        self._stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reload = True

    # -- forking ----------------------------------------------------------------------
    @property
    def slots(self) -> int:
        return self.count * len(self.groups)

    def roles_of(self, index: int) -> frozenset[str]:
        """The roles of worker slot ``index`` (slots are grouped by role group)."""
        return self.groups[index // self.count]

    def spawn(self, index: int) -> _Worker:
        """Fork worker ``index`` (a slot number, 0..slots-1)."""
        from esam_mail import app

        self._generation += 1
        ready = self.run_dir / f"worker-{index}.{self._generation}.ready"
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        roles = self.roles_of(index)
        wcfg = role_config(worker_config(self.cfg, self.ports), roles)
        sys.stdout.flush()
        sys.stderr.flush()
        shared = {s.fileno() for s in self._reserved if _is_listening(s)}
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                for s in self._reserved:
                    if s.fileno() not in shared:
                        s.close()
                for h in logging.getLogger().handlers:
                    h.setFormatter(_WorkerFormatter(h.formatter, index))
                event(log, "worker.started", index=index, roles="+".join(sorted(roles)))
                if self.cfg.server.cpu_affinity:
                    from esam_mail.affinity import pin_worker

                    pin_worker(index, self.slots)  # before any thread starts: they inherit it
                code = app.run(wcfg, ready_file=str(ready), reuse_port=True, roles=roles)
            except BaseException:  # the worker must never return into the supervisor
                log.exception("worker %d failed", index)
            finally:
                with contextlib.suppress(Exception):
                    logging.shutdown()
                os._exit(code)
        w = _Worker(index=index, pid=pid, ready_file=ready, started=time.monotonic())
        self.workers[pid] = w
        return w

    def _signal(self, w: _Worker, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.pid, sig)

    def _reap(self) -> list[tuple[_Worker, int]]:
        """Collect exited workers: [(worker, exit status)]."""
        out = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            w = self.workers.pop(pid, None)
            if w is not None:
                with contextlib.suppress(FileNotFoundError):
                    w.ready_file.unlink()
                out.append((w, os.waitstatus_to_exitcode(status)))
        return out

    def _check_ready(self) -> None:
        for w in self.workers.values():
            if not w.ready and w.ready_file.exists():
                w.ready = True

    def _write_ready(self) -> None:
        if not self.ready_file:
            return
        pids = sorted(w.pid for w in self.workers.values())
        roles = {str(w.pid): "+".join(sorted(self.roles_of(w.index))) for w in self.workers.values()}
        body = json.dumps({"pid": os.getpid(), "ports": self.ports, "workers": pids,
                           "roles": roles}).encode()
        fsio.atomic_write(self.ready_file, body, fsync=False)

    # -- the main loop ------------------------------------------------------------------
    def run(self) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT; the exit code."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob("worker-*.ready"):
            stale.unlink()
        self.ports, self._reserved = reserve_ports(self.cfg)
        old = {s: signal.signal(s, self._on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        try:
            if not self._start_all():
                self._stop_all()
                return 1
            self._write_ready()
            event(log, "supervisor.ready", workers=self.slots,
                  ports=",".join(f"{k}:{v}" for k, v in self.ports.items()))
            while not self._stop:
                if self._reload:
                    self._reload = False
                    self._rolling_restart()
                self._watch()
                time.sleep(_POLL)
            event(log, "supervisor.stopping")
            self._stop_all()
            return 0
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            forget_inherited()  # a later supervisor in this process makes its own
            for sock in self._reserved:
                sock.close()

    def _start_all(self) -> bool:
        # Made here, before the first fork, so every worker (and every restarted one) shares
        # one login cache table: a login proved in one worker is a hit in all of them.
        from esam_mail.services.authcache import node_cache

        a = self.cfg.auth
        node_cache(a.cache_slots, ttl=a.cache_seconds, max_age=a.cache_max_seconds)
        for i in range(self.slots):
            self.spawn(i)
        deadline = time.monotonic() + _READY_TIMEOUT
        while not all(w.ready for w in self.workers.values()):
            for w, code in self._reap():
                log.error("worker %d (pid %d) exited with %d before it was ready", w.index, w.pid, code)
                return False
            if self._stop or time.monotonic() > deadline:
                return False
            self._check_ready()
            time.sleep(_POLL)
        return True

    def _watch(self) -> None:
        self._check_ready()
        for w, code in self._reap():
            if w.stopping:
                continue
            lived = time.monotonic() - w.started
            n = 0 if lived > _STABLE_AFTER else self._crashes.get(w.index, 0) + 1
            self._crashes[w.index] = n
            delay = min(0.1 * 2**n, 10.0) if n else 0.0
            log.error("worker %d (pid %d) exited with %d; restarting in %.1fs", w.index, w.pid, code, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._stop:
                time.sleep(_POLL)
            if not self._stop:
                self.spawn(w.index)

    def _rolling_restart(self) -> None:
        """SIGHUP: re-read the config, replace the workers one by one."""
        if self.cfg.source:
            try:
                self.cfg = config_mod.load(self.cfg.source)
            except ConfigError as exc:  # keep serving with the old config
                log.error("reload: the config file has problems, keeping the old one: %s", exc)
                return
        event(log, "supervisor.reload", workers=self.count)
        for old in sorted(self.workers.values(), key=lambda w: w.index):
            new = self.spawn(old.index)
            deadline = time.monotonic() + _READY_TIMEOUT
            while not new.ready and new.pid in self.workers and time.monotonic() < deadline:
                self._check_ready()
                time.sleep(_POLL)
                if self._stop:
                    return
            old.stopping = True
            self._signal(old, signal.SIGTERM)

    def _stop_all(self) -> None:
        for w in self.workers.values():
            w.stopping = True
            self._signal(w, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.server.shutdown_grace + 10
        while self.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(_POLL)
        for w in list(self.workers.values()):
            log.error("worker %d (pid %d) did not stop in time; killing it", w.index, w.pid)
            self._signal(w, signal.SIGKILL)
        while self.workers:
            self._reap()
            time.sleep(_POLL)


def role_config(cfg: Config, roles: frozenset[str]) -> Config:
    """``cfg`` with the listeners of the other roles switched off."""
    off = {name: "" for role, names in ROLE_LISTENERS.items() if role not in roles for name in names}
    return dataclasses.replace(cfg, listen=dataclasses.replace(cfg.listen, **off)) if off else cfg


def run_workers(cfg: Config, workers: int, ready_file: str | None,
                groups: list[frozenset[str]] | None = None) -> int:
    """Entry point of ``esam serve --workers N`` (N > 1) and ``--roles``: ``workers``
    processes for each role group."""
    return Supervisor(cfg, workers, ready_file, groups or [frozenset(ROLE_LISTENERS)]).run()
