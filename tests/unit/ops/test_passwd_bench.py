"""`esam passwd-bench`: argon2id parameters chosen to a target time, never below OWASP's floor,
and existing hashes upgraded at the next login once the config changes."""

from __future__ import annotations

import pytest

from esam_mail.cli import main
from esam_mail.directory.passwords import PasswordHasher, choose_argon2, meets_owasp_floor


def cost_model(per_mib_iter_ms: float):
    calls: list[tuple[int, int]] = []

    def measure(m: int, t: int, rounds: int) -> float:
        calls.append((m, t))
        return m / 1024 * t * per_mib_iter_ms

    return measure, calls


def test_strongest_within_target_memory_first_then_iterations() -> None:
    measure, _ = cost_model(1.0)  # 1 ms per MiB per pass
    c = choose_argon2(140, max_memory_kib=1 << 20, measure=measure)
    assert (c.memory_kib, c.time_cost) == (131072, 1) and c.within_target  # 128 ms; 192 MiB would be 192
    measure, _ = cost_model(0.1)
    c = choose_argon2(130, max_memory_kib=64 * 1024, measure=measure)  # memory capped: iterations grow
    assert (c.memory_kib, c.time_cost) == (65536, 10)  # iterations capped at 10
    assert c.median_ms <= 130 and meets_owasp_floor(c.memory_kib, c.time_cost)


def test_slow_machine_gets_the_floor_and_is_told() -> None:
    measure, calls = cost_model(100.0)
    c = choose_argon2(10, measure=measure)
    assert (c.memory_kib, c.time_cost) == (19456, 2) and not c.within_target
    assert calls == [(19456, 2)]  # measured once, not again
    assert meets_owasp_floor(c.memory_kib, c.time_cost)
    assert not meets_owasp_floor(8192, 2) and not meets_owasp_floor(19456, 1)


def test_changed_parameters_rehash_on_next_login() -> None:
    old = PasswordHasher(19456, 2, 1)
    stored = old.hash("Mountain-Lake-42")
    ok, new = PasswordHasher(47104, 1, 1).verify("Mountain-Lake-42", stored)
    assert ok and new is not None and "m=47104,t=1,p=1" in new
    ok, new = old.verify("Mountain-Lake-42", stored)
    assert ok and new is None  # unchanged parameters: nothing to store


def test_cli_names_the_bad_field(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, option in ((["--target-ms", "-5"], "--target-ms"), (["--max-memory-mib", "4"], "--max-memory-mib")):
        with pytest.raises(SystemExit) as exc:  # refused by the parser, exit 2 (bad input)
            main(["passwd-bench", *argv])
        assert exc.value.code == 2
        assert f"argument {option}: must be" in capsys.readouterr().err
