"""Micro-benchmark: the CPU of one folder look (what the pool call of a command in a SELECTed folder does
before its answer: ``_snapshot`` of the mailbox service), unchanged and after another
process's flag change, APPEND or EXPUNGE.

    .venv/bin/python bench/look.py [--messages 150] [--dir /var/tmp]

Process CPU time per look, fsync off (a look writes nothing).  Use a directory on the
filesystem the store lives on; compare two trees by running each one's copy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from esam_mail.services.mailflow.mailboxes import _snapshot
from esam_mail.store.maildir import MaildirStore


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=150)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--looks", type=int, default=3000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="esam-look.", dir=args.dir))
    try:
        user = MaildirStore(root, fsync=False).user("alice")
        user.create()
        folder = user.folder("INBOX")
        for i in range(args.messages):
            folder.append(b"Subject: %d\r\n\r\nx\r\n" % i)
        other = MaildirStore(root, fsync=False).user("alice").folder("INBOX")  # another process's view
        uids = [i.uid for i in other.sync()]
        _snapshot(folder, True)
        t = time.process_time()
        for _ in range(args.looks):
            _snapshot(folder, True)
        unchanged = (time.process_time() - t) / args.looks
        spent = 0.0
        changes = max(1, args.looks // 3)
        for k in range(changes):
            other.store_flags([uids[k % len(uids)]], ["\\Seen"], 1 if k % 2 else -1)
            t = time.process_time()
            _snapshot(folder, True)
            spent += time.process_time() - t
        arrivals = max(1, min(300, args.looks // 10))
        arrived = 0.0
        new_uids = []
        for k in range(arrivals):
            new_uids.append(other.append(b"Subject: new %d\r\n\r\nx\r\n" % k))
            t = time.process_time()
            _snapshot(folder, True)
            arrived += time.process_time() - t
        expunged = 0.0
        for uid in new_uids:
            other.store_flags([uid], ["\\Deleted"], 1)
            other.expunge([uid])
            t = time.process_time()
            _snapshot(folder, True)
            expunged += time.process_time() - t
        print(f"{args.messages} messages: unchanged look {unchanged * 1e6:.1f} us CPU; "
              f"look after another process's flag change {spent / changes * 1e6:.1f} us CPU; "
              f"after its APPEND {arrived / arrivals * 1e6:.1f} us; "
              f"after its EXPUNGE {expunged / arrivals * 1e6:.1f} us")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
