"""RFC 5267 contexts without sockets: return options, PARTIAL windows, and the
ADDTO/REMOVEFROM lines a client applies one pair after another."""

from __future__ import annotations

import random
import re

import pytest

from esam_mail.imap import context as ctx
from esam_mail.imap import sort
from esam_mail.imap.parser import Atom, ParseError


def _opts(raw: bytes) -> ctx.ReturnOpts:
    return ctx.parse_return([Atom(w) for w in raw.split()])


def test_parse_return() -> None:
    assert _opts(b"").names == {b"ALL"}
    assert _opts(b"CONTEXT").names == {b"ALL"}
    o = _opts(b"update count partial -5:-1")
    assert o.update and o.names == {b"COUNT"} and o.partial == (-1, -5)
    assert _opts(b"UPDATE").names == frozenset()
    assert _opts(b"SAVE").only_save and not _opts(b"SAVE UPDATE").only_save
    for bad in (b"ALL PARTIAL 1:2", b"PARTIAL", b"PARTIAL 0:1", b"PARTIAL -1:2",
                b"PARTIAL 1:99999999999", b"UPDATE UPDATE", b"NOPE", b"PARTIAL 1:2 PARTIAL 1:2"):
        with pytest.raises(ParseError):
            _opts(bad)


@pytest.mark.parametrize(("rng", "want"), [
    ((1, 3), [10, 20, 30]), ((4, 9), [40, 50]), ((6, 9), []),
    ((-1, -2), [40, 50]), ((-5, -9), [10]), ((-6, -9), []), ((-1, -9), [10, 20, 30, 40, 50]),
])
def test_window(rng: tuple[int, int], want: list[int]) -> None:
    assert list(ctx.window([10, 20, 30, 40, 50], rng)) == want


def _keys(uid: int, subject: str, size: int) -> sort.SortKeys:
    return sort.SortKeys(uid, uid, 0.0, size, {"s": subject})


def _client_apply(model: list[int], line: bytes) -> None:
    """What a client does with one ESEARCH update (pairs applied in order)."""
    for verb, body in re.findall(rb"(REMOVEFROM|ADDTO) \(([^)]*)\)", line):
        words = body.split()
        for pos_raw, set_raw in zip(words[::2], words[1::2], strict=True):
            pos = int(pos_raw)
            ids = []
            for item in set_raw.split(b","):
                a, _, b = item.partition(b":")
                ids.extend(range(int(a), int(b or a) + 1))
            if verb == b"REMOVEFROM":
                assert model[pos - 1 : pos - 1 + len(ids)] == ids, (line, model)
                del model[pos - 1 : pos - 1 + len(ids)]
            else:
                model[pos - 1 : pos - 1] = ids


@pytest.mark.parametrize("seed", range(20))
def test_sorted_updates_replay_on_the_client(seed: int) -> None:
    rnd = random.Random(seed)
    criteria = [("SUBJECT", rnd.random() < 0.5), ("SIZE", rnd.random() < 0.5)]
    pool = {u: _keys(u, rnd.choice("ABCD"), rnd.randrange(5)) for u in range(1, 80)}
    start = rnd.sample(sorted(pool), 20)
    ordered = sort.sort_messages([pool[u] for u in start], criteria)
    c = ctx.SearchContext(b"t", True, _opts(b"UPDATE"), [], (), [m.uid for m in ordered],
                          criteria, {m.uid: m for m in ordered})
    model = list(c.members)
    for _ in range(30):
        inside = list(c.members)
        removes = rnd.sample(inside, min(len(inside), rnd.randrange(4)))
        outside = [u for u in pool if u not in inside]
        adds = [pool[u] for u in rnd.sample(outside, min(len(outside), rnd.randrange(6)))]
        line = ctx.Contexts._apply(c, adds, removes, lambda u: u)
        if line is not None:
            _client_apply(model, line)
        assert model == c.members
        want = sort.sort_messages([pool[u] for u in c.members], criteria)
        assert c.members == [m.uid for m in want]
