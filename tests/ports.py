"""Loopback ports for tests that must name a port before the server that binds it starts.

A server that can listen on port 0 should (``127.0.0.1:0``, then read the port back); this is for the
rest: two servers that each need the other's port in their configuration (our MX and a Postfix peer).

``bind(port 0)`` answers from the kernel's ephemeral range, which every outgoing connection and every
port-0 listener of the parallel test workers draw from as well: between our close and the server's
own bind one of them can take the port (CI: ``[Errno 98] ... ('127.0.0.1', 40465): address already in
use``). So ports come from below that range, where nothing else is handed out, each xdist worker from
its own slice, in turn, and only if a bind shows the port free now.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

_FLOOR = 20000  # above the well-known services a test machine runs (PostgreSQL, Redis, ...)
_SLICE = 400


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    top = max(_ephemeral_low(), _FLOOR + _SLICE)
    slots = max(1, (top - _FLOOR) // _SLICE)
    start = _FLOOR + (n % slots) * _SLICE
    return range(start, min(start + _SLICE, top))


_lock = threading.Lock()
_ports = _slice()
_turn = itertools.cycle(random.sample(list(_ports), len(_ports)))


def free_port() -> int:
    """A loopback TCP port outside the ephemeral range that nothing listens on now."""
    with _lock:
        for _ in range(len(_ports)):
            port = next(_turn)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free loopback port in {_ports.start}-{_ports.stop - 1}")
