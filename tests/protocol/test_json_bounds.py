"""HTTP JSON bodies within bounds: deep nesting and huge numbers are a 422 with a
clear problem, never a 500 with a traceback (issue 14)."""

from __future__ import annotations

import logging

import pytest

from tests.protocol.test_eds_http import anchors, call, pki, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.protocol

PATH = "/api/v1/applications/canonical"


@pytest.mark.parametrize(("raw", "text"), [
    (b"[" * 5000 + b"]" * 5000, "nested more than 32 levels"),
    (b'{"kind": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels"),
    (b'{"kind": "individual", "application": {"iin": ' + b"9" * 5000 + b"}}",
     "more than 40 characters"),
    (b'{"kind": NaN}', "NaN"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_hostile_json_is_422(server, caplog, raw, text):  # noqa: F811 - fixture
    caplog.set_level(logging.ERROR)
    status, body, _ = call(server, "POST", PATH, raw=raw)
    assert status == 422, body
    assert body["problems"][0]["field"] == "body"
    assert text in body["problems"][0]["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
