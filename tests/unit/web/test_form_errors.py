"""Every problem the application validators report gets a specific sentence in kk and ru."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from esam_mail.errors import ValidationError
from esam_mail.i18n import Translator
from esam_mail.services.accounts.application import (
    ValidationErrors,
    validate_individual,
    validate_legal_entity,
)
from esam_mail.services.accounts.password_policy import WeakPassword, password_problem
from esam_mail.web.form_errors import FALLBACK, localize
from tests.unit.registration.samples import INDIVIDUAL, LEGAL_ENTITY

BAD_INDIVIDUAL: list[dict[str, Any]] = [
    {},
    {"iin": "12345", "birth_date": "1985-13-45", "surname": "\x01", "username": "a", "mobile_phone": "12",
     "id_document": {"type": "visa", "number": "№1", "issue_date": "3000-01-01"},
     "residence_address": {"postcode": "1", "house": "x" * 30}, "sex": "X"},
    {"iin": "850525400018", "username": "Ａdmin", "mobile_phone": "+1 (202) 555-0100",
     "birth_date": "1800-01-01", "given_name": "123"},
    {"iin": "000000000000", "username": "a..b", "home_phone": "abc"},
    {"username": "-ab-", "mobile_phone": "+7 701 12"},
    {"username": "postmaster", "extra": 1},
]
BAD_ENTITY: list[dict[str, Any]] = [
    {},
    {"bin": "151340001236", "registration": {"number": "", "date": "yesterday"}, "work_phone": "0"},
    {"bin": "150390001236", "representative": {"iin": "1"}},
    {"signer_role": "director", "poa_number": "7"},
    {"signer_role": "representative", "poa_date": "2999-01-01"},
    {"signer_role": "head", "poa_date": "2026-01-15"},
]


def problems() -> list[ValidationError]:
    out: list[ValidationError] = []
    for patch in BAD_INDIVIDUAL:
        raw = copy.deepcopy(INDIVIDUAL) if patch else {}
        for k, v in patch.items():
            raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
        with pytest.raises(ValidationErrors) as e:
            validate_individual(raw, reserved=["postmaster"])
        out.extend(e.value.errors)
    for patch in BAD_ENTITY:
        raw = copy.deepcopy(LEGAL_ENTITY) if patch else {}
        raw.update(patch)
        with pytest.raises(ValidationErrors) as e:
            validate_legal_entity(raw)
        out.extend(e.value.errors)
    return out


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_no_validator_message_falls_back(lang: str) -> None:
    found = problems()
    assert len({p.message for p in found}) >= 25  # the sample covers many kinds of problem
    fallback = Translator("web", lang)(FALLBACK)
    vague = sorted({p.message for p in found if localize(p, lang) == fallback})
    assert not vague, vague
    # nothing English leaks into the Kazakh/Russian text
    assert all(not localize(p, lang).isascii() for p in found)


def test_password_problems_translate_themselves() -> None:
    problem = password_problem("short", login="aigerim")
    assert problem is not None
    weak = WeakPassword("password", problem)
    assert localize(weak, "ru") == problem.text("ru") != problem.text("en")
