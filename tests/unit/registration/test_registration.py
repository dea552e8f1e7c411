"""RegistrationService on SQLite and PostgreSQL (rules, paragraphs 4-7, 11, 13, appendix).

Every test runs once per database (the ``db_url`` fixture).  "Nothing written"
means no row in subscribers, applications and mailboxes and no Maildir.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from esam_mail.directory.models import AgreementVersion, Application, AuditEvent, Mailbox, Subscriber
from esam_mail.errors import AuthError, ConfigError, LoginTaken, NotFound, ValidationError
from esam_mail.services.accounts.application import ValidationErrors
from esam_mail.services.accounts.registration import agreement_sha256, ensure_agreement
from esam_mail.services.accounts.registry import FileRegistry, OfflineRegistry
from tests.unit.registration.conftest import NOTHING, Env
from tests.unit.registration.samples import INDIVIDUAL, LEGAL_ENTITY, OTHER_IIN, REGISTRY_EXTRACT

PASSWORD = "correct horse battery"


def login_works(env: Env, login: str, password: str = PASSWORD) -> bool:
    from esam_mail.services.auth import DirectoryAuthenticator

    auth = DirectoryAuthenticator(env.directory, env.hasher, workers=1, cache_seconds=0)
    try:
        env.run(auth.authenticate(login, password, peer="127.0.0.9", service="imap"))
        return True
    except AuthError:
        return False
    finally:
        auth.close()


def field_errors(exc: pytest.ExceptionInfo[ValidationError]) -> tuple[str, ...]:
    e = exc.value
    return tuple(x.field for x in getattr(e, "errors", (e,)))


# --------------------------------------------------------------------------------------
# Happy paths (para. 6, 7)
# --------------------------------------------------------------------------------------


def test_individual_registered_and_usable_at_once(env: Env) -> None:
    done = env.individual()
    assert done.address == "asem.akhmetova@esam.test"
    assert done.login == "asem.akhmetova"
    assert done.status == "active"
    assert done.password is None  # the applicant chose one
    assert env.written() == {"subscribers": 1, "applications": 1, "mailboxes": 1, "maildirs": 1}
    # para. 7: the Maildir with INBOX exists and the login works now
    assert env.store.user("asem.akhmetova").exists()
    assert login_works(env, "asem.akhmetova")
    assert login_works(env, "asem.akhmetova@esam.test")

    (sub,) = env.rows(Subscriber)
    assert (sub.kind, sub.iin, sub.bin) == ("individual", "850525400017", None)
    assert sub.display_name == "Ахметова Әсем Серікқызы"
    (app,) = env.rows(Application)
    assert app.subscriber_id == sub.id
    assert (app.channel, app.office_code, app.employee_id) == ("office", "ALA01", "e-17")
    assert app.data == INDIVIDUAL  # the data as submitted
    assert app.requested_username == "asem.akhmetova"
    (agreement,) = env.rows(AgreementVersion)
    assert app.agreement_version_id == agreement.id
    assert app.agreement_sha256 == agreement.sha256 == agreement_sha256(env.cfg)
    assert agreement.version == env.cfg.registration.agreement_version
    assert app.consent_at is not None and app.status == "accepted"
    (box,) = env.rows(Mailbox)
    assert (box.state, box.kind, box.owner_key, box.subscriber_id) == ("active", "personal", sub.iin, sub.id)
    assert PASSWORD not in box.password_hash


def test_generated_password_is_returned_once_and_works(env: Env) -> None:
    done = env.individual(password=None)
    assert done.password is not None and len(done.password) >= 12
    assert login_works(env, done.login, done.password)
    assert done.to_dict()["password"] == done.password


def test_legal_entity_registered_and_may_hold_several(env: Env) -> None:
    first = env.legal_entity()
    assert (first.address, first.status) == ("romashka@esam.test", "active")
    second = env.legal_entity({**copy.deepcopy(LEGAL_ENTITY), "username": "romashka.buh"})
    assert second.address == "romashka.buh@esam.test"
    boxes = env.rows(Mailbox)
    assert [b.owner_key for b in boxes] == [None, None]
    subs = env.rows(Subscriber)
    assert {s.bin for s in subs} == {"150340001236"} and {s.kind for s in subs} == {"legal_entity"}
    assert login_works(env, "romashka") and login_works(env, "romashka.buh")


def test_online_channel_records_signature_and_subscriber_actor(env: Env) -> None:
    done = env.individual(
        channel="online",
        office_code=None,
        employee_id=None,
        signature=b"0\x82cms",
        signer_fingerprint="ab" * 32,
    )
    assert done.status == "active"
    (app,) = env.rows(Application)
    assert (app.channel, app.office_code, app.employee_id) == ("online", None, None)
    assert app.signature == b"0\x82cms" and app.signer_fingerprint == "ab" * 32
    (ev,) = [e for e in env.rows(AuditEvent) if e.action == "mailbox.register"]
    assert (ev.actor_kind, ev.actor_id) == ("subscriber", "850525400017")


def test_online_channel_needs_a_signature(env: Env) -> None:
    with pytest.raises(ValidationErrors) as exc:
        env.individual(channel="online", office_code=None, employee_id=None)
    assert field_errors(exc) == ("signature",)
    assert env.written() == NOTHING


# --------------------------------------------------------------------------------------
# Invalid fields: ValidationErrors naming each, nothing written
# --------------------------------------------------------------------------------------


def _put(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = raw
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    if value is _DROP:
        node.pop(last, None)
    else:
        node[last] = value
    return raw


class _Drop:
    """Marks a field to remove; a stable repr keeps test ids equal across processes (xdist)."""

    def __repr__(self) -> str:
        return "<dropped>"


_DROP = _Drop()

INDIVIDUAL_CASES = [
    ("surname", _DROP),
    ("given_name", "Ә5ем"),
    ("iin", "850525400018"),  # checksum
    ("iin", "000000000000"),  # passes the checksum, fails the structure
    ("birth_date", "1985-05-26"),  # contradicts the IIN
    ("id_document.type", "library_card"),
    ("id_document.number", "12"),
    ("id_document.issuer", _DROP),
    ("id_document.issue_date", "2999-01-01"),
    ("residence_address.postcode", "12345"),
    ("residence_address.locality", _DROP),
    ("residence_address.house", _DROP),
    ("mobile_phone", "12"),
    ("home_phone", "+1 555"),
    ("username", "postmaster"),  # RFC 2142 role
    ("username", "kazpost"),  # the operator's own reserved list
    ("username", "a..b"),
    ("username", ".asem"),
    ("username", "as"),
    ("username", "асем"),
    ("patronimic", "typo"),  # unknown field
]


@pytest.mark.parametrize(
    ("field", "value"), INDIVIDUAL_CASES, ids=[f"{f}={v!r}" for f, v in INDIVIDUAL_CASES]
)
def test_each_invalid_individual_field_is_named_and_nothing_written(
    make_env: Any, field: str, value: Any
) -> None:
    env = make_env(mail={"domain": "esam.test", "reserved_names": ["kazpost"]})
    raw = _put(copy.deepcopy(INDIVIDUAL), field, value)
    with pytest.raises(ValidationErrors) as exc:
        env.individual(raw)
    assert field in field_errors(exc), exc.value
    assert env.written() == NOTHING
    assert env.count(AuditEvent) == 0


LEGAL_CASES = [
    ("name", _DROP),
    ("bin", "150340001237"),  # checksum
    ("bin", "949940000385"),  # month 99
    ("bin", "000000000000"),
    ("registration.number", _DROP),
    ("registration.date", "31.02.2015"),
    ("legal_address.postcode", "ABC"),
    ("actual_address.street", _DROP),
    ("work_phone", _DROP),
    ("mobile_phone", "+7 999"),
    ("username", "abuse"),
    ("representative", {"surname": "Фёдоров", "given_name": "Пётр", "iin": "751111300032"}),
]


@pytest.mark.parametrize(("field", "value"), LEGAL_CASES, ids=[f"{f}={v!r}" for f, v in LEGAL_CASES])
def test_each_invalid_legal_entity_field_is_named_and_nothing_written(
    env: Env, field: str, value: Any
) -> None:
    raw = _put(copy.deepcopy(LEGAL_ENTITY), field, value)
    with pytest.raises(ValidationErrors) as exc:
        env.legal_entity(raw)
    want = "representative.iin" if field == "representative" else field
    assert want in field_errors(exc), exc.value
    assert env.written() == NOTHING


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"office_code": None}, "office"),
        ({"office_code": "  "}, "office"),
        ({"employee_id": None}, "employee"),
        ({"accepted_agreement": None}, "accept_agreement"),
        ({"accepted_agreement": "2019-1"}, "accept_agreement"),
        ({"password": "short"}, "password"),
        ({"password": "has\x00control"}, "password"),
        ({"channel": "fax"}, "channel"),
    ],
)
def test_procedure_fields_are_named_and_nothing_written(env: Env, kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationErrors) as exc:
        env.individual(**kw)
    assert field_errors(exc) == (field,)
    assert env.written() == NOTHING


def test_all_problems_are_reported_together(env: Env) -> None:
    raw = {**copy.deepcopy(INDIVIDUAL), "iin": "123", "username": "x"}
    with pytest.raises(ValidationErrors) as exc:
        env.individual(raw, accepted_agreement=None, employee_id=None)
    assert set(field_errors(exc)) >= {"iin", "username", "accept_agreement", "employee"}


# --------------------------------------------------------------------------------------
# The agreement (para. 5)
# --------------------------------------------------------------------------------------


def test_ensure_agreement_is_idempotent(env: Env) -> None:
    a = env.run(ensure_agreement(env.directory, env.cfg))
    b = env.run(ensure_agreement(env.directory, env.cfg))
    assert a == b and a.sha256 == agreement_sha256(env.cfg)
    assert env.count(AgreementVersion) == 1


def test_changed_agreement_text_needs_a_new_label(make_env: Any, tmp_path: Path) -> None:
    text_file = tmp_path / "agreement.txt"
    text_file.write_text("Version A of the agreement.\n")
    env = make_env(registration={"agreement_file": str(text_file), "agreement_version": "A"})
    env.run(ensure_agreement(env.directory, env.cfg))
    env.individual(accepted_agreement="A")
    text_file.write_text("Version A, quietly edited.\n")
    with pytest.raises(ConfigError, match="needs a new version label"):
        env.run(ensure_agreement(env.directory, env.cfg))
    with pytest.raises(ConfigError, match="needs a new version label"):
        env.individual(
            {**copy.deepcopy(INDIVIDUAL), "iin": OTHER_IIN, "birth_date": None, "username": "ivan"},
            accepted_agreement="A",
        )
    assert env.count(Mailbox) == 1
    # a new label for the new text works, and both versions stay on record
    env2 = make_env(registration={"agreement_file": str(text_file), "agreement_version": "B"})
    env2.individual(
        {**copy.deepcopy(INDIVIDUAL), "iin": OTHER_IIN, "birth_date": None, "username": "ivan"},
        accepted_agreement="B",
    )
    assert sorted(v.version for v in env2.rows(AgreementVersion)) == ["A", "B"]
    shas = {a.agreement_sha256 for a in env2.rows(Application)}
    assert len(shas) == 2


def test_missing_agreement_file_refuses_registration(make_env: Any, tmp_path: Path) -> None:
    text_file = tmp_path / "agreement.txt"
    text_file.write_text("The agreement.\n")
    env = make_env(registration={"agreement_file": str(text_file)})
    text_file.unlink()  # removed after the config was checked
    with pytest.raises(ConfigError, match="agreement_file"):
        env.individual()
    assert env.written() == NOTHING


# --------------------------------------------------------------------------------------
# Uniqueness (para. 4, 11) and one mailbox per IIN
# --------------------------------------------------------------------------------------


def test_login_taken_case_insensitively(env: Env) -> None:
    env.individual()
    other = {**copy.deepcopy(INDIVIDUAL), "iin": OTHER_IIN, "birth_date": None, "username": "Asem.Akhmetova"}
    with pytest.raises(LoginTaken):
        env.individual(other)
    assert env.written() == {"subscribers": 1, "applications": 1, "mailboxes": 1, "maildirs": 1}


def test_closed_mailbox_login_is_never_registered_again(env: Env) -> None:
    env.individual()
    env.run(env.directory.set_state("asem.akhmetova", "closed", actor=("sysadmin", "t")))
    for who in (INDIVIDUAL["iin"], OTHER_IIN):  # not the former owner, not anyone else
        raw = {**copy.deepcopy(INDIVIDUAL), "iin": who, "birth_date": None}
        with pytest.raises(LoginTaken):
            env.individual(raw)
    with pytest.raises(LoginTaken):
        env.legal_entity({**copy.deepcopy(LEGAL_ENTITY), "username": "ASEM.akhmetova"})
    assert env.count(Mailbox) == 1 and env.count(Subscriber) == 1


def test_one_open_personal_mailbox_per_iin(env: Env) -> None:
    env.individual()
    second = {**copy.deepcopy(INDIVIDUAL), "username": "asem2"}
    with pytest.raises(ValidationError) as exc:
        env.individual(second)
    assert exc.value.field == "iin" and "already has an open mailbox" in exc.value.message
    assert env.written() == {"subscribers": 1, "applications": 1, "mailboxes": 1, "maildirs": 1}
    # once the first is closed, the person may have a new one (under a new name)
    env.run(env.directory.set_state("asem.akhmetova", "closed", actor=("sysadmin", "t")))
    assert env.individual(second).status == "active"


def test_one_mailbox_per_iin_policy_off(make_env: Any) -> None:
    env = make_env(registration={"one_mailbox_per_iin": False})
    env.individual()
    done = env.individual({**copy.deepcopy(INDIVIDUAL), "username": "asem2"})
    assert done.status == "active"
    assert [b.owner_key for b in env.rows(Mailbox)] == [None, None]


# --------------------------------------------------------------------------------------
# State registry and policy (para. 13)
# --------------------------------------------------------------------------------------


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(REGISTRY_EXTRACT, ensure_ascii=False))
    return path


@pytest.mark.parametrize("policy", ["reject", "hold", "accept"])
def test_registry_match_accepts_under_any_policy(make_env: Any, extract: Path, policy: str) -> None:
    env = make_env(
        registration={"registry": "file", "registry_file": str(extract), "registry_policy": policy}
    )
    done = env.individual()
    assert (done.status, done.registry_verdict) == ("active", "match")
    assert env.legal_entity().registry_verdict == "match"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surname": "Ахмедова"}, "surname"),
        ({"given_name": "Асель"}, "given_name"),
        ({"patronymic": "Ивановна"}, "patronymic"),
        ({"iin": "061211600012", "birth_date": None}, "iin"),  # valid IIN, not in the extract
        (
            {
                "iin": OTHER_IIN,
                "birth_date": None,
                "surname": "Иванов",
                "given_name": "Иван",
                "patronymic": None,
            },
            "iin",
        ),  # deceased
    ],
)
def test_registry_rejection_names_the_field(
    make_env: Any, extract: Path, change: dict[str, Any], field: str
) -> None:
    env = make_env(
        registration={"registry": "file", "registry_file": str(extract), "registry_policy": "accept"}
    )
    with pytest.raises(ValidationError) as exc:
        env.individual({**copy.deepcopy(INDIVIDUAL), **change})
    assert exc.value.field == field
    assert env.written() == NOTHING
    (ev,) = env.rows(AuditEvent)
    assert (ev.action, ev.outcome, ev.actor_kind) == ("registration.reject", "denied", "employee")


@pytest.mark.parametrize(
    ("change", "field"),
    [({"name": "ТОО Лютик"}, "name"), ({"bin": "940140000385"}, "bin"), ({"bin": "990140004654"}, "bin")],
)
def test_registry_rejects_entities(make_env: Any, extract: Path, change: dict[str, Any], field: str) -> None:
    env = make_env(
        registration={"registry": "file", "registry_file": str(extract), "registry_policy": "accept"}
    )
    with pytest.raises(ValidationError) as exc:
        env.legal_entity({**copy.deepcopy(LEGAL_ENTITY), **change})
    assert exc.value.field == field
    assert env.written() == NOTHING


def test_unavailable_registry_policy_reject(make_env: Any) -> None:
    env = make_env(registration={"registry_policy": "reject"})
    with pytest.raises(ValidationError) as exc:
        env.individual()
    assert exc.value.field == "registry"
    assert env.written() == NOTHING


def test_unavailable_registry_policy_accept(make_env: Any) -> None:
    env = make_env(registration={"registry_policy": "accept"})
    done = env.individual()
    assert (done.status, done.registry_verdict) == ("active", "unavailable")


def test_unavailable_registry_policy_hold_then_approve(make_env: Any) -> None:
    env = make_env(registration={"registry_policy": "hold"})
    done = env.individual()
    assert (done.status, done.registry_verdict) == ("held", "unavailable")
    assert env.store.user(done.login).exists()
    assert not login_works(env, done.login)  # held: no login, no mail
    rec = env.run(env.directory.by_address(done.address))
    assert rec.state == "held" and not rec.open
    (app,) = env.rows(Application)
    assert app.status == "held"
    # the IIN is taken while held
    with pytest.raises(ValidationError) as exc:
        env.individual({**copy.deepcopy(INDIVIDUAL), "username": "asem2"})
    assert exc.value.field == "iin"

    rec = env.run(env.service.approve(done.login, actor=("employee", "e-99")))
    assert rec.state == "active"
    assert login_works(env, done.login)
    (app,) = env.rows(Application)
    assert app.status == "accepted"
    ev = [e for e in env.rows(AuditEvent) if e.action == "mailbox.approve"]
    assert [(e.actor_kind, e.actor_id, e.target) for e in ev] == [("employee", "e-99", done.address)]
    with pytest.raises(ValidationError):
        env.run(env.service.approve(done.login, actor=("employee", "e-99")))
    with pytest.raises(NotFound):
        env.run(env.service.approve("nobody", actor=("employee", "e-99")))


def test_offline_registry_mismatch_on_declared_sex(env: Env) -> None:
    service = env.make_service(OfflineRegistry())
    raw = {**copy.deepcopy(INDIVIDUAL), "sex": "M"}
    with pytest.raises(ValidationErrors) as exc:  # the validator already sees it
        env.individual(raw, service=service)
    assert field_errors(exc) == ("sex",)


def test_injected_file_registry(env: Env, extract: Path) -> None:
    service = env.make_service(FileRegistry(extract))
    assert env.individual(service=service).registry_verdict == "match"


# --------------------------------------------------------------------------------------
# Audit (append-only) and the Maildir on failure
# --------------------------------------------------------------------------------------


def test_audit_event_written_and_append_only(env: Env) -> None:
    done = env.individual()
    (ev,) = env.rows(AuditEvent)
    assert (ev.actor_kind, ev.actor_id, ev.action, ev.target, ev.outcome) == (
        "employee",
        "e-17",
        "mailbox.register",
        done.address,
        "ok",
    )
    assert ev.detail["channel"] == "office" and ev.detail["office"] == "ALA01"
    assert PASSWORD not in json.dumps(ev.detail) and "850525400017" not in json.dumps(ev.detail)

    async def tamper(sql: str) -> None:
        async with env.directory.transaction() as s:
            await s.execute(text(sql))

    with pytest.raises(DBAPIError, match="append-only"):
        env.run(tamper("UPDATE audit_events SET outcome = 'denied'"))
    with pytest.raises(DBAPIError, match="append-only"):
        env.run(tamper("DELETE FROM audit_events"))
    assert env.count(AuditEvent) == 1


class _FailingUser:
    def __init__(self, user: Any) -> None:
        self._user = user

    def __getattr__(self, name: str) -> Any:
        return getattr(self._user, name)

    def create(self) -> None:
        self._user.create()
        raise OSError("disk full")


class _FailingStore:
    def __init__(self, store: Any) -> None:
        self.store = store

    def user(self, login: str) -> _FailingUser:
        return _FailingUser(self.store.user(login))


def test_failed_transaction_removes_the_new_maildir(env: Env) -> None:
    from esam_mail.services.accounts.registration import RegistrationService

    service = RegistrationService(env.directory, _FailingStore(env.store), env.hasher, env.cfg)
    with pytest.raises(OSError, match="disk full"):
        env.individual(service=service)
    assert env.written() == NOTHING
    assert env.count(AuditEvent) == 0


def test_failed_transaction_keeps_a_maildir_it_did_not_make(env: Env) -> None:
    from esam_mail.services.accounts.registration import RegistrationService

    env.store.user("asem.akhmetova").create()  # e.g. restored from a backup
    service = RegistrationService(env.directory, _FailingStore(env.store), env.hasher, env.cfg)
    with pytest.raises(OSError):
        env.individual(service=service)
    assert env.store.user("asem.akhmetova").exists()
    assert env.count(Mailbox) == 0
