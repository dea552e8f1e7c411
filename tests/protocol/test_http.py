"""HTTP listener basics: health, 404, no exception text."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.protocol.harness import Running


def get(r: Running, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{r.ports['http']}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_healthz(running: Running) -> None:
    status, body = get(running, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_unknown_path_is_404_json(running: Running) -> None:
    status, body = get(running, "/nope")
    assert status == 404 and json.loads(body)["error"] == "not_found"


def test_handler_crash_is_500_without_detail(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom() -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(running.services.directory, "count_by", boom)
    status, body = get(running, "/healthz")
    assert status == 503 and b"secret" not in body
