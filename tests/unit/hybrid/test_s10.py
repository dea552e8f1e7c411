"""UPU S10 check digit (domain.md §4 vectors) and the never-reusing allocator."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from esam_mail.services.hybrid.errors import HybridInputError, HybridStateError
from esam_mail.services.hybrid.s10 import (
    TrackingAllocator,
    check_digit,
    format_s10,
    format_s10_display,
    is_valid_s10,
    validate_s10,
)


@pytest.mark.parametrize("number", ["RR123456785KZ", "EE123456785US", "CP000000005KZ"])
def test_valid_vectors(number: str) -> None:
    assert is_valid_s10(number)
    assert validate_s10(number) == number


@pytest.mark.parametrize("number", ["RA000000000KZ", "RR123456786KZ", "RR12345678KZ"])
def test_invalid_vectors(number: str) -> None:
    assert not is_valid_s10(number)
    with pytest.raises(HybridInputError) as e:
        validate_s10(number)
    assert e.value.field == "tracking_number"


@pytest.mark.parametrize(
    ("serial", "digit"),
    [("00000000", 5), ("00000008", 0), ("47312482", 9), ("87332482", 6), ("00000001", 4),
     ("99999999", 5), ("00000099", 0), ("54555453", 3)],
)
def test_check_digit(serial: str, digit: int) -> None:
    assert check_digit(serial) == digit


def test_format_and_normalize() -> None:
    assert format_s10("RR", 12345678) == "RR123456785KZ"
    assert format_s10("CP", 0, "KZ") == "CP000000005KZ"
    assert validate_s10(" rr 123 456 785 kz ") == "RR123456785KZ"
    assert format_s10_display("RR123456785KZ") == "RR 123 456 785 KZ"
    with pytest.raises(HybridInputError):
        validate_s10("EE123456785US", country="KZ")
    with pytest.raises(HybridInputError):
        format_s10("R1", 1)
    with pytest.raises(HybridInputError):
        format_s10("RR", 100_000_000)


def test_allocator_sequence_and_persistence(tmp_path: Path) -> None:
    a = TrackingAllocator(tmp_path, service="RR")
    first = [a.allocate() for _ in range(3)]
    assert first == ["RR000000005KZ", "RR000000014KZ", "RR000000028KZ"]
    assert all(is_valid_s10(n) for n in first)
    # A new instance (as after a restart) continues, never repeats.
    b = TrackingAllocator(tmp_path, service="RR")
    assert b.peek() == format_s10("RR", 3) == "RR000000031KZ"
    assert b.allocate_many(2) == [format_s10("RR", 3), format_s10("RR", 4)]
    # Service indicators count independently.
    assert TrackingAllocator(tmp_path, service="EE").allocate() == "EE000000005KZ"


def test_allocator_refuses_corrupt_counter_and_exhaustion(tmp_path: Path) -> None:
    a = TrackingAllocator(tmp_path, first_serial=5, last_serial=6)
    assert a.allocate_many(2)[0].startswith("RR00000005")
    with pytest.raises(HybridStateError):
        a.allocate()
    (tmp_path / "s10-RRKZ.next").write_text("garbage")
    with pytest.raises(HybridStateError):
        a.allocate()


def _worker(state_dir: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    a = TrackingAllocator(Path(state_dir))
    out.put([a.allocate() for _ in range(n)])


def test_allocator_never_reuses_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), 25, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0
    numbers = [n for r in results for n in r]
    assert len(numbers) == 100
    assert len(set(numbers)) == 100
    serials = sorted(int(n[2:10]) for n in numbers)
    assert serials == list(range(100))
