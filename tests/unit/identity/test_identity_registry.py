"""State-registry verdicts and policy (para. 13; domain.md section 3)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from esam_mail.errors import ConfigError
from esam_mail.services.accounts.application import validate_individual, validate_legal_entity
from esam_mail.services.accounts.registry import (
    Decision,
    EntityQuery,
    FileRegistry,
    OfflineRegistry,
    PersonQuery,
    RegistryPolicy,
    StateRegistry,
    Verdict,
    decide,
    normalize_for_match,
)

DATA = Path(__file__).parent / "data"
TODAY = date(2026, 11, 26)

ASEM = PersonQuery("850525400017", "Ахметова", "Әсем", "Серікқызы", date(1985, 5, 25), "F")
PETR = PersonQuery("751111300031", "Фёдоров", "Пётр", "Алексеевич", date(1975, 11, 11), "M")


@pytest.fixture(params=["json", "csv"])
def registry(request: pytest.FixtureRequest) -> FileRegistry:
    if request.param == "json":
        return FileRegistry(DATA / "registry.json")
    return FileRegistry(DATA / "persons.csv", DATA / "entities.csv")


def test_implementations_satisfy_the_protocol() -> None:
    assert isinstance(OfflineRegistry(), StateRegistry)
    assert isinstance(FileRegistry(DATA / "registry.json"), StateRegistry)


# -- offline ----------------------------------------------------------------


def test_offline_never_matches() -> None:
    off = OfflineRegistry()
    assert off.verify_person(ASEM).verdict is Verdict.UNAVAILABLE
    assert off.verify_entity(EntityQuery("150340001236", "ТОО «Ромашка»")).verdict is (
        Verdict.UNAVAILABLE
    )


@pytest.mark.parametrize(
    "query",
    [
        PersonQuery("850525400017", "Ахметова", "Әсем", birth_date=date(1985, 5, 26)),
        PersonQuery("850525400017", "Ахметова", "Әсем", sex="M"),
        PersonQuery("850525400018", "Ахметова", "Әсем"),
        PersonQuery("000000000000", "Ахметова", "Әсем"),
    ],
)
def test_offline_mismatch_on_contradiction(query: PersonQuery) -> None:
    answer = OfflineRegistry().verify_person(query)
    assert answer.verdict is Verdict.MISMATCH
    assert answer.reason


def test_offline_entity_mismatch() -> None:
    off = OfflineRegistry()
    assert off.verify_entity(EntityQuery("949940000385")).verdict is Verdict.MISMATCH
    assert off.verify_entity(EntityQuery("150340001236", head_iin="1")).verdict is (
        Verdict.MISMATCH
    )


# -- file extract -----------------------------------------------------------


def test_person_match(registry: FileRegistry) -> None:
    answer = registry.verify_person(ASEM)
    assert answer.verdict is Verdict.MATCH
    assert answer.record["surname"] == "Ахметова"


def test_person_match_is_case_blank_and_yo_insensitive(registry: FileRegistry) -> None:
    q = PersonQuery("751111300031", "  ФЕДОРОВ ", "петр", "алексеевич")
    assert registry.verify_person(q).verdict is Verdict.MATCH


def test_person_match_nfd_input(registry: FileRegistry) -> None:
    q = PersonQuery("751111300031", "Фе\u0308доров", "Пётр")
    assert registry.verify_person(q).verdict is Verdict.MATCH


def test_yo_strict_when_configured() -> None:
    strict = FileRegistry(DATA / "registry.json", yo_equals_ye=False)
    assert strict.verify_person(PETR).verdict is Verdict.MATCH
    q = PersonQuery("751111300031", "Федоров", "Петр")
    assert strict.verify_person(q).verdict is Verdict.MISMATCH


def test_kazakh_letters_are_not_folded(registry: FileRegistry) -> None:
    q = PersonQuery("850525400017", "Ахметова", "Асем")  # а is not ә
    assert registry.verify_person(q).verdict is Verdict.MISMATCH


def test_patronymic_optional(registry: FileRegistry) -> None:
    q = PersonQuery("850525400017", "Ахметова", "Әсем")
    assert registry.verify_person(q).verdict is Verdict.MATCH
    q = PersonQuery("850525400017", "Ахметова", "Әсем", "Серикович")
    answer = registry.verify_person(q)
    assert answer.verdict is Verdict.MISMATCH and "patronymic" in answer.reason


@pytest.mark.parametrize(
    ("query", "verdict"),
    [
        (PersonQuery("850525400017", "Иванова", "Әсем"), Verdict.MISMATCH),
        (PersonQuery("700101300065", "Иванов", "Иван"), Verdict.NOT_FOUND),
        (PersonQuery("880808400050", "Ким", "Ольга"), Verdict.DECEASED),
        (PersonQuery("880808400050", "Пак", "Ольга"), Verdict.DECEASED),
        (PersonQuery("850525400017", "Ахметова", "Әсем", sex="M"), Verdict.MISMATCH),
    ],
)
def test_person_verdicts(registry: FileRegistry, query: PersonQuery, verdict: Verdict) -> None:
    assert registry.verify_person(query).verdict is verdict


def test_person_without_patronymic_in_registry() -> None:
    reg = FileRegistry(DATA / "registry.json")
    assert reg.verify_person(PersonQuery("010202500042", "Нұрланов", "Ерлан")).verdict is (
        Verdict.MATCH
    )


@pytest.mark.parametrize(
    ("query", "verdict"),
    [
        (EntityQuery("150340001236", "ТОО «Ромашка»", "751111300031"), Verdict.MATCH),
        (EntityQuery("150340001236", 'тоо "ромашка"'), Verdict.MATCH),
        (EntityQuery("150340001236"), Verdict.MATCH),
        (EntityQuery("150340001236", "ТОО «Василёк»"), Verdict.MISMATCH),
        (EntityQuery("150340001236", "ТОО «Ромашка»", "850525400017"), Verdict.MISMATCH),
        (EntityQuery("101240004568", "АО «Қазақ Ақпарат»"), Verdict.INACTIVE),
        (EntityQuery("180840003216", "ТОО «Новое»"), Verdict.NOT_FOUND),
        (EntityQuery("949940000385"), Verdict.MISMATCH),
    ],
)
def test_entity_verdicts(registry: FileRegistry, query: EntityQuery, verdict: Verdict) -> None:
    assert registry.verify_entity(query).verdict is verdict


def test_entity_without_head_in_registry() -> None:
    reg = FileRegistry(DATA / "registry.json")
    q = EntityQuery("050541007891", "Филиал ТОО «Ромашка» в г. Алматы", "850525400017")
    assert reg.verify_entity(q).verdict is Verdict.MATCH


def test_bad_extract_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as exc:
        FileRegistry(DATA / "bad_persons.csv")
    problems = exc.value.problems
    assert len(problems) == 3
    assert any("zombie" in p for p in problems)
    assert any("12 digits" in p for p in problems)
    assert any("birth_date" in p for p in problems)
    assert all("bad_persons.csv:" in p for p in problems)


def test_unreadable_or_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        FileRegistry(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("[1", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid JSON"):
        FileRegistry(tmp_path / "x.json")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="header"):
        FileRegistry(tmp_path / "x.csv")
    (tmp_path / "d.json").write_text(
        '{"persons": [{"iin": "850525400017", "surname": "A", "given_name": "B"},'
        ' {"iin": "850525400017", "surname": "A", "given_name": "B"}]}',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="duplicate"):
        FileRegistry(tmp_path / "d.json")
    (tmp_path / "e.json").write_text('{"entities": [{"bin": "150340001236"}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match="name required"):
        FileRegistry(tmp_path / "e.json")
    with pytest.raises(ConfigError):
        FileRegistry()


def test_normalize_for_match() -> None:
    assert normalize_for_match("  Ерлан\u00a0  Ёлкин ") == "ерлан елкин"
    assert normalize_for_match("Ёлкин", yo_equals_ye=False) == "ёлкин"
    assert normalize_for_match("Жан\u2013Поль") == "жан-поль"
    assert normalize_for_match("ҚАЗАҚ") == "қазақ"
    assert normalize_for_match(None) == ""


def test_queries_from_applications(individual: dict[str, Any], legal_entity: dict[str, Any]) -> None:
    reg = FileRegistry(DATA / "registry.json")
    person = validate_individual(individual, today=TODAY)
    assert reg.verify_person(PersonQuery.from_application(person)).verdict is Verdict.MATCH
    entity = validate_legal_entity(legal_entity, today=TODAY)
    assert reg.verify_entity(EntityQuery.from_application(entity)).verdict is Verdict.MATCH


# -- policy -----------------------------------------------------------------


@pytest.mark.parametrize("policy", list(RegistryPolicy))
def test_match_always_accepts(policy: RegistryPolicy) -> None:
    d = decide(Verdict.MATCH, policy)
    assert (d.accept, d.hold, d.outcome) == (True, False, "accept")


@pytest.mark.parametrize("policy", list(RegistryPolicy))
@pytest.mark.parametrize(
    "verdict", [Verdict.MISMATCH, Verdict.NOT_FOUND, Verdict.DECEASED, Verdict.INACTIVE]
)
def test_negative_verdicts_always_reject(verdict: Verdict, policy: RegistryPolicy) -> None:
    d = decide(verdict, policy)
    assert (d.accept, d.hold, d.outcome) == (False, False, "reject")
    assert d.reason


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [
        (RegistryPolicy.ACCEPT, "accept"),
        (RegistryPolicy.HOLD, "hold"),
        (RegistryPolicy.REJECT, "reject"),
    ],
)
def test_unavailable_follows_policy(policy: RegistryPolicy, outcome: str) -> None:
    d = decide(Verdict.UNAVAILABLE, policy)
    assert d.outcome == outcome
    assert "unavailable" in d.reason
    assert not (d.accept and d.hold)
    assert isinstance(d, Decision)
