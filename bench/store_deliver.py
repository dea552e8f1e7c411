"""Micro-benchmark: MaildirStore.deliver_many with fsync on (the SMTP hot path).

Usage: python bench/store_deliver.py [--dir DIR] [--count N] [--size BYTES] [--rcpts K]
       [--no-fsync]

Prints deliveries/s (one delivery = one message to K recipients: one write + fsync,
K links, K directory fsyncs, K maildirsize appends).  Use --dir on the filesystem the
store will live on; the default is a temporary directory (often tmpfs, where fsync is
nearly free, so pass --dir for a meaningful figure).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from esam_mail.store.maildir import MaildirStore


def run(root: Path, count: int, size: int, rcpts: int, fsync: bool) -> float:
    store = MaildirStore(root, default_quota=10**12, fsync=fsync)
    logins = [f"user{i}" for i in range(rcpts)]
    for login in logins:
        store.user(login).create()
    body = b"Subject: bench\r\n\r\n" + b"x" * max(0, size - 20)
    store.deliver_many(logins, body)  # warm up
    t0 = time.perf_counter()
    for _ in range(count):
        store.deliver_many(logins, body)
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="parent directory for the store")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--no-fsync", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="esam-bench-", dir=args.dir))
    try:
        for rcpts in sorted({1, args.rcpts}):
            rate = run(base / f"r{rcpts}", args.count, args.size, rcpts, not args.no_fsync)
            print(
                f"deliver_many: {rate:8.1f} deliveries/s  ({rcpts} rcpt, {args.size} B, "
                f"fsync={'off' if args.no_fsync else 'on'}, dir={base})"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
