"""`esam passwd-bench` measuring argon2id for real on this machine (seconds of hashing)."""

from __future__ import annotations

import json

import pytest

from esam_mail.cli import main


def test_cli_measures_for_real_and_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["passwd-bench", "--target-ms", "100000", "--max-memory-mib", "20", "--rounds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory_kib"] == 19456 and out["time_cost"] >= 2 and out["within_target"]
    assert out["tried"][0]["median_ms"] > 0
