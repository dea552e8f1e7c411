"""The metrics module: exposition format 0.0.4, fixed label values, and their documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from esam_mail import metrics
from esam_mail.metrics import Registry

ROOT = Path(__file__).resolve().parents[3]


def test_counter_exports_every_declared_series_from_the_start() -> None:
    r = Registry()
    c = r.counter("x_total", "Things.", {"kind": ("a", "b")})
    c.inc(kind="b")
    c.inc(2, kind="b")
    text = r.render()
    assert text == ('# HELP x_total Things.\n# TYPE x_total counter\n'
                    'x_total{kind="a"} 0\nx_total{kind="b"} 3\n')


def test_unknown_label_values_fold_into_other_or_fail() -> None:
    r = Registry()
    c = r.counter("c_total", "C.", {"code": ("550", "other")})
    c.inc(code="999")
    assert c.value(code="other") == 1
    g = r.gauge("g", "G.", {"listener": ("mx",)})
    with pytest.raises(ValueError, match="not one of"):
        g.set(1, listener="10.0.0.1")
    with pytest.raises(ValueError):
        c.inc(code="550", extra="x")
    with pytest.raises(ValueError):
        c.inc(-1, code="550")


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    r = Registry()
    h = r.histogram("lat_seconds", "Latency.", {"command": ("fetch",)}, buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 5.0):
        h.observe(v, command="fetch")
    lines = r.render().splitlines()
    assert 'lat_seconds_bucket{command="fetch",le="0.1"} 1' in lines
    assert 'lat_seconds_bucket{command="fetch",le="1"} 3' in lines
    assert 'lat_seconds_bucket{command="fetch",le="+Inf"} 4' in lines
    assert 'lat_seconds_sum{command="fetch"} 6.05' in lines
    assert 'lat_seconds_count{command="fetch"} 4' in lines


def test_label_values_and_help_are_escaped() -> None:
    r = Registry()
    r.counter("e_total", 'Back\\slash\nnewline.', {"v": ('a"b',)})
    text = r.render()
    assert '# HELP e_total Back\\\\slash\\nnewline.' in text and 'e_total{v="a\\"b"} 0' in text


def test_imap_command_labels() -> None:
    assert metrics.imap_command_label("UID FETCH") == "uid_fetch"
    assert metrics.imap_command_label("FETCH") == "fetch"
    assert metrics.imap_command_label("XYZZY") == "other"


def test_every_metric_and_label_value_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name, m in metrics.REGISTRY.metrics.items():
        assert f"`{name}`" in doc, f"{name} is not documented in docs/operations.md"
        for label, values in m.labels.items():
            section = doc.split(f"`{name}`", 1)[1].split("\n### ", 1)[0]
            for v in values:
                assert re.search(rf"`{re.escape(v)}`", section), f"{name}: {label}={v} undocumented"
