"""Property tests: validators fail only with ValidationError (R1, para. 6).

Whatever a client posts, the registration service must answer with a field
error (HTTP 422 / CLI exit 2), never with a crash.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from identity_samples import INDIVIDUAL, LEGAL_ENTITY

from esam_mail.errors import ValidationError
from esam_mail.services.accounts.application import (
    canonical_json,
    validate_application,
    validate_individual,
    validate_legal_entity,
)
from esam_mail.services.accounts.identity import (
    checksum_ok,
    kz_check_digit,
    normalize_phone,
    normalize_postcode,
    normalize_username,
    validate_bin,
    validate_iin,
)

TODAY = date(2026, 11, 26)
KEYS = sorted({*INDIVIDUAL, *LEGAL_ENTITY, "kind", "schema", "type", "number", "issuer",
               "issue_date", "expiry_date", "region", "locality", "street", "house",
               "apartment", "postcode", "date", "iin"})  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["850525400017", "150340001236", "2020-01-01", "+77011234567", "A01P3K4"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5),
    max_leaves=6,
)
raw_dicts = st.dictionaries(
    st.sampled_from(KEYS) | st.integers() | st.text(max_size=8), values, max_size=12
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_validation_error(fn: Any, raw: Any) -> None:
    try:
        fn(raw, reserved={"akimat"}, today=TODAY)
    except ValidationError as e:
        assert isinstance(e.field, str) and e.field
        assert isinstance(e.message, str) and e.message


@FAST
@given(raw_dicts)
def test_validate_individual_only_raises_validation_error(raw: dict[Any, Any]) -> None:
    _only_validation_error(validate_individual, raw)


@FAST
@given(raw_dicts)
def test_validate_legal_entity_only_raises_validation_error(raw: dict[Any, Any]) -> None:
    _only_validation_error(validate_legal_entity, raw)


@FAST
@given(values)
def test_validate_application_any_json(raw: Any) -> None:
    _only_validation_error(validate_application, raw)


def _mutations(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The valid fixture with one field (top level or nested) replaced."""

    def mutate(path_value: tuple[int, Any]) -> dict[str, Any]:
        index, value = path_value
        raw = copy.deepcopy(base)
        paths = [(k,) for k in raw] + [
            (k, sub) for k, v in raw.items() if isinstance(v, dict) for sub in v
        ]
        path = paths[index % len(paths)]
        target = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return raw

    return st.tuples(st.integers(min_value=0), values).map(mutate)


@FAST
@given(_mutations(INDIVIDUAL))
def test_mutated_individual(raw: dict[str, Any]) -> None:
    try:
        app = validate_individual(raw, today=TODAY)
    except ValidationError:
        return
    # whatever was accepted round-trips through the canonical form
    assert validate_individual(json.loads(canonical_json(app)), today=TODAY) == app


@FAST
@given(_mutations(LEGAL_ENTITY))
def test_mutated_legal_entity(raw: dict[str, Any]) -> None:
    try:
        app = validate_legal_entity(raw, today=TODAY)
    except ValidationError:
        return
    assert validate_legal_entity(json.loads(canonical_json(app)), today=TODAY) == app


@FAST
@given(st.text(max_size=20) | st.from_regex(r"\A[0-9 ]{10,14}\Z"))
def test_field_functions_only_raise_validation_error(text: str) -> None:
    for fn in (validate_iin, validate_bin, normalize_phone, normalize_postcode, normalize_username):
        try:
            fn(text)
        except ValidationError:
            pass


@FAST
@given(st.from_regex(r"\A[0-9]{11}\Z"))
def test_checksum_completion(first11: str) -> None:
    check = kz_check_digit(first11)
    completions = [first11 + str(d) for d in range(10) if checksum_ok(first11 + str(d))]
    assert completions == ([] if check is None else [first11 + str(check)])
