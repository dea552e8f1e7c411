"""esam_mail.imap.textcache: bounded by the size of what it holds, least recently used out."""

from __future__ import annotations

import sys

from esam_mail.imap.textcache import TextCache


def test_kept_by_folder_key_and_which_text() -> None:
    c = TextCache()
    c.put("f1", "k", True, "full")
    c.put("f1", "k", False, "body")
    assert c.get("f1", "k", True) == "full" and c.get("f1", "k", False) == "body"
    assert c.get("f2", "k", True) is None and c.get("f1", "other", True) is None
    c.put("f1", "k", True, "changed?")  # a key's content never changes: the first stays
    assert c.get("f1", "k", True) == "full"


def test_bounded_by_size_least_recently_used_out() -> None:
    item = sys.getsizeof("x" * 100)
    c = TextCache(budget=3 * item, max_item=item)
    for k in "abc":
        c.put("f", k, True, k * 100)
    assert c.get("f", "a", True) == "a" * 100  # a is now the most recent
    c.put("f", "d", True, "d" * 100)
    assert c.get("f", "b", True) is None
    assert [c.get("f", k, True) is not None for k in "acd"] == [True, True, True]
    assert c.size() == 3 * item and len(c) == 3
    c.put("f", "big", True, "x" * 101)  # larger than max_item: not kept
    assert c.get("f", "big", True) is None and len(c) == 3
