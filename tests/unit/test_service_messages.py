"""A service refuses input with an i18n.Message: the CLI and the web say it in the reader's
language (from the service's own catalogue), while str() stays the English text for the logs."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from types import SimpleNamespace

import pytest

from esam_mail.cli import _i18n
from esam_mail.cli.commands import handle_errors
from esam_mail.errors import ValidationError
from esam_mail.services.accounts.application import ValidationErrors, validate_individual
from esam_mail.services.accounts.identity import normalize_username, validate_iin
from esam_mail.web.form_errors import localize
from tests.unit.registration.samples import INDIVIDUAL

WANT = {
    "iin": {"en": "IIN is not valid: the check digit does not match",
            "ru": "ИИН недействителен: не совпадает контрольная цифра.",
            "kk": "ЖСН жарамсыз: бақылау цифры сәйкес келмейді."},
    "username": {"en": "user name 'postmaster' is reserved and cannot be registered",
                 "ru": "Имя пользователя 'postmaster' зарезервировано и не может быть зарегистрировано.",
                 "kk": "'postmaster' пайдаланушы аты сақталған, оны тіркеуге болмайды."},
}


def refused(field: str) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        validate_iin("850525400018") if field == "iin" else normalize_username("postmaster", reserved=["postmaster"])
    return e.value


@pytest.mark.parametrize("field", sorted(WANT))
@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_identity_refusal_in_the_cli_and_on_the_web(
    field: str, lang: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    problem = refused(field)
    assert str(problem.message) == WANT[field]["en"]  # logs and English assertions unchanged
    assert localize(problem, lang) == WANT[field][lang]

    def refuse(args: argparse.Namespace) -> int:
        raise problem

    monkeypatch.setattr(_i18n, "_LANG_OPTION", lang)
    assert handle_errors(refuse)(argparse.Namespace()) == 2
    assert capsys.readouterr().err == f"esam: {field}: {WANT[field][lang]}\n"


def test_a_field_label_is_said_in_the_language_too() -> None:
    raw = copy.deepcopy(INDIVIDUAL)
    del raw["mobile_phone"]
    with pytest.raises(ValidationErrors) as e:
        validate_individual(raw)
    (problem,) = [p for p in e.value.errors if p.field == "mobile_phone"]
    assert problem.message == "mobile phone is required"
    assert localize(problem, "ru") == "Не заполнено поле «мобильный телефон»."
    assert localize(problem, "kk") == "«ұялы телефон» өрісі толтырылмаған."


# -- staff, aliases, hybrid gateway, official channel ------------------------------------------
async def _staff_refusal() -> None:
    from esam_mail.services.accounts.staff import StaffService

    await StaffService(SimpleNamespace(), str, lambda a, b: False).add(  # type: ignore[arg-type]
        "Bad User", "Асем", "employee", "x" * 12, office_code="ALM01", actor=("sysadmin", "cli"))


async def _alias_refusal() -> None:
    from esam_mail.directory.aliases import AliasDirectory

    AliasDirectory(SimpleNamespace(domain="esam.kz"))._name("a@other.kz")  # type: ignore[arg-type]


async def _hybrid_refusal() -> None:
    from esam_mail.services.hybrid.gateway import HybridMail

    await HybridMail.__new__(HybridMail).ingest(b"%PDF-", to="#1", facility="alm 01", employee="e-17")


async def _s10_refusal() -> None:
    from esam_mail.services.hybrid.s10 import validate_s10

    validate_s10("RR1234")


async def _official_refusal() -> None:
    from esam_mail.services.official.channel import decode_b64

    decode_b64("not base64!", "document")


AREAS = {
    "staff": (_staff_refusal, "username",
              {"en": "lower-case letters, digits, '.', '_' or '-', at most 63",
               "ru": "Строчные буквы, цифры, '.', '_' или '-', не более 63 символов.",
               "kk": "Кіші әріптер, цифрлар, '.', '_' немесе '-', 63 таңбадан аспайды."}),
    "aliases": (_alias_refusal, "name",
                {"en": "an alias is a local part of esam.kz, not 'a@other.kz'",
                 "ru": "Псевдоним — это локальная часть адреса в домене esam.kz, а не 'a@other.kz'.",
                 "kk": "Бүркеншік ат — esam.kz доменіндегі жергілікті бөлік, ал 'a@other.kz' емес."}),
    "hybrid": (_hybrid_refusal, "facility",
               {"en": "'alm 01' is not a facility code (A-Z, 0-9, _ -)",
                "ru": "'alm 01' не является кодом объекта (A-Z, 0-9, _ -).",
                "kk": "'alm 01' — мекеме коды емес (A-Z, 0-9, _ -)."}),
    "hybrid-s10": (_s10_refusal, "tracking_number",
                   {"en": "'RR1234' is not an S10 identifier: expected 2 letters, 9 digits, 2 letters (e.g. RR123456785KZ)",
                    "ru": "'RR1234' не является идентификатором S10: нужно 2 буквы, 9 цифр, 2 буквы (например, RR123456785KZ).",
                    "kk": "'RR1234' S10 сәйкестендіргіші емес: 2 әріп, 9 цифр, 2 әріп болуы керек (мысалы, RR123456785KZ)."}),
    "official": (_official_refusal, "document",
                 {"en": "not Base64", "ru": "Это не Base64.", "kk": "Base64 емес."}),
}


@pytest.mark.parametrize("area", sorted(AREAS))
@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_service_refusal_in_the_cli_and_the_web_api(
    area: str, lang: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from esam_mail.web.i18n import current
    from esam_mail.web.server import error_response

    make, field, want = AREAS[area]
    with pytest.raises(ValidationError) as e:
        asyncio.run(make())
    problem = e.value
    assert (problem.field, str(problem.message)) == (field, want["en"])

    def refuse(args: argparse.Namespace) -> int:
        raise problem

    monkeypatch.setattr(_i18n, "_LANG_OPTION", lang)
    assert handle_errors(refuse)(argparse.Namespace()) == 2
    assert capsys.readouterr().err == f"esam: {field}: {want[lang]}\n"

    token = current.set(lang)
    try:
        body = json.loads(bytes(error_response(problem, "r1").body))
    finally:
        current.reset(token)
    assert body["problems"] == [{"field": field, "message": want["en"], "text": want[lang]}]


def test_a_registry_refusal_is_said_in_the_language() -> None:
    """The applicant's refusal after the state-registry check: our reason in kk/ru, the
    registry's own detail (an outside system's text) kept as it came."""
    from esam_mail.services.accounts.identity import M_
    from esam_mail.services.accounts.registry import RegistryPolicy, Verdict, decide

    reason = decide(Verdict.MISMATCH, RegistryPolicy.REJECT).reason
    problem = ValidationError("iin", M_("{decision}: {detail}", decision=reason, detail="surname differs"))
    assert str(problem.message) == "the declared data does not match the state registry: surname differs"
    assert localize(problem, "ru") == "Указанные данные не совпадают с данными государственного реестра: surname differs"
    assert localize(problem, "kk") == (
        "Көрсетілген деректер мемлекеттік тізілімдегі деректерге сәйкес келмейді: surname differs")
