"""esam_mail.jsonbody: bounded JSON for request bodies (issue 14)."""

from __future__ import annotations

import time

import pytest

from esam_mail.jsonbody import MAX_DEPTH, JSONBoundError, loads_bounded


def test_ordinary_documents_parse():
    assert loads_bounded(b'{"a": [1, 2.5, {"b": null}], "c": "x[{"}') == {
        "a": [1, 2.5, {"b": None}], "c": "x[{"}
    assert loads_bounded("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert loads_bounded('"' + "[" * 100 + '"') == "[" * 100  # brackets in strings are text


@pytest.mark.parametrize("doc", [
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 3000 + "1" + "}" * 3000,
])
def test_deep_nesting_is_refused(doc):
    with pytest.raises(JSONBoundError, match="nested more than"):
        loads_bounded(doc)


@pytest.mark.parametrize("doc", ["9" * 5000, "[1, -" + "1" * 41 + "]", "1." + "0" * 50, "1e" + "9" * 45])
def test_long_numbers_are_refused_before_conversion(doc):
    t0 = time.perf_counter()
    with pytest.raises(JSONBoundError, match="number"):
        loads_bounded(doc)
    assert time.perf_counter() - t0 < 0.1


@pytest.mark.parametrize(("doc", "text"), [
    (b"\xff", "not UTF-8"), (b"{nope", "not valid JSON"), (b"NaN", "NaN"), (b"[Infinity]", "NaN"),
])
def test_other_bad_bodies(doc, text):
    with pytest.raises(JSONBoundError, match=text):
        loads_bounded(doc)
