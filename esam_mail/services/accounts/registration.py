"""Registration of electronic subscriber mailboxes (rules, paragraphs 4-7, 11, 13, appendix).

The procedure, in the order the rules give it:

* para. 6 and the appendix: an application of an individual or a legal entity,
  submitted online (signed with EDS) or at a post office (entered by an
  employee whose office and id are recorded);
* para. 5: no mailbox without consent to the user agreement; the version
  label and the SHA-256 of its text are recorded with the consent time;
* para. 13: the applicant is identified by IIN/BIN and checked against the
  state registry (:mod:`esam_mail.services.accounts.registry`); the operator's policy
  says what happens when the registry cannot confirm;
* para. 4, 11: the login (= the local part of the address) is unique across
  every mailbox ever issued; the database enforces it
  (``uq_mailboxes_login_norm``), so concurrent applications for one name end
  with exactly one mailbox and a "login taken" for the others;
* para. 7: the mailbox exists from the moment the application is submitted:
  subscriber, application, mailbox and audit event are written in **one**
  transaction and the Maildir is made before it commits, so when
  :meth:`RegistrationService.register_individual` returns, the login works
  over IMAP and SMTP.

Nothing here logs a password or personal data: log lines carry ids only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import secrets
import shutil
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from esam_mail.config import Config
from esam_mail.directory.accounts import (
    AgreementRow,
    NewApplication,
    NewSubscriber,
    NotHeld,
    RegisteredRows,
    RegistrationTables,
)
from esam_mail.directory.sql import OwnerKeyTaken, SqlDirectory
from esam_mail.errors import ConfigError, ValidationError
from esam_mail.i18n import normalize as normalize_language
from esam_mail.log import event
from esam_mail.services.accounts.application import (
    IndividualApplication,
    LegalEntityApplication,
    ValidationErrors,
    validate_individual,
    validate_legal_entity,
)
from esam_mail.services.accounts.identity import M_
from esam_mail.services.accounts.notices import NoticeKind
from esam_mail.services.accounts.password_policy import check_password
from esam_mail.services.accounts.registry import (
    EntityQuery,
    FileRegistry,
    OfflineRegistry,
    PersonQuery,
    RegistryAnswer,
    RegistryPolicy,
    StateRegistry,
    Verdict,
    decide,
)

__all__ = [
    "AgreementEdition",
    "AgreementInfo",
    "Channel",
    "Registered",
    "RegistrationService",
    "agreement_edition",
    "agreement_text",
    "ensure_agreement",
    "generate_password",
    "registry_from_config",
]

log = logging.getLogger(__name__)

Channel = Literal["office", "online"]
CHANNELS: tuple[str, ...] = ("office", "online")

#: Alphabet of generated passwords (no look-alike characters: 0/O, 1/l/I).
_PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


# --------------------------------------------------------------------------
# The user agreement (para. 5)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreementInfo:
    """The agreement version in force: its row id, label and text hash."""

    id: int
    version: str
    sha256: str
    effective_date: dt.datetime


def agreement_text(cfg: Config) -> str:
    """The text of the user agreement in force (para. 5: the operator publishes it).

    Raises:
        ConfigError: the file named by ``registration.agreement_file`` cannot be read.
    """
    return _agreement_bytes(cfg).decode("utf-8")


def _agreement_bytes(cfg: Config) -> bytes:
    path: Path = cfg.agreement_path
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            [f"registration.agreement_file: cannot read the user agreement {path} ({e.__class__.__name__})"]
        ) from None
    if not data.strip():
        raise ConfigError([f"registration.agreement_file: the user agreement {path} is empty"])
    return data


def agreement_sha256(cfg: Config) -> str:
    """SHA-256 (hex) of the agreement file's bytes, as recorded with every consent."""
    return hashlib.sha256(_agreement_bytes(cfg)).hexdigest()


@dataclass(frozen=True, slots=True)
class AgreementEdition:
    """The agreement in force in one language: what an applicant reads, and its SHA-256."""

    version: str
    language: str
    sha256: str
    text: str

    def consent(self) -> dict[str, str]:
        return {"agreement_version": self.version, "agreement_sha256": self.sha256, "language": self.language}


@functools.lru_cache(maxsize=16)
def _edition_bytes(path: str, _mtime_ns: int) -> bytes:
    return Path(path).read_bytes()


def agreement_edition(cfg: Config, language: str | None) -> AgreementEdition:
    """The agreement in *language*: ``registration.agreement_file`` is the English text, its
    translations lie beside it as ``<name>.kk.txt`` and ``<name>.ru.txt`` (as ``/agreement``
    publishes them).  A language without a published translation gets the main text, and the
    edition says so (``language = "en"``): the consent records what was actually shown.
    """
    lang = normalize_language(language)
    main = cfg.agreement_path
    path = main if lang == "en" else main.with_name(f"{main.stem}.{lang}{main.suffix}")
    try:
        data = _edition_bytes(str(path), path.stat().st_mtime_ns)
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        if lang == "en":
            raise
        return agreement_edition(cfg, "en")
    if not data.strip():
        if lang == "en":
            raise ConfigError([f"registration.agreement_file: the user agreement {path} is empty"])
        return agreement_edition(cfg, "en")
    return AgreementEdition(cfg.registration.agreement_version, lang, hashlib.sha256(data).hexdigest(),
                            data.decode("utf-8"))


async def ensure_agreement(directory: SqlDirectory, cfg: Config) -> AgreementInfo:
    """Record the configured agreement version with the hash of its text (para. 5).

    Idempotent, and safe when several processes call it at once.  A label is
    bound to one text for ever: if ``registration.agreement_version`` is
    already recorded with another SHA-256, the text was changed without a new
    label, and this refuses (consents given under the old text must keep
    pointing at what the applicants actually read).

    Raises:
        ConfigError: the file is unreadable, or its text changed under an existing label.
    """
    return await _ensure_agreement(RegistrationTables(directory), cfg)


async def _ensure_agreement(tables: RegistrationRecords, cfg: Config) -> AgreementInfo:
    version = cfg.registration.agreement_version
    digest = agreement_sha256(cfg)
    row = await tables.agreement(version, digest, dt.datetime.now(dt.UTC))
    if row is None:
        raise ConfigError([f"registration.agreement_version: could not record version {version!r}"])
    if row.sha256 != digest:
        raise ConfigError(
            [
                f"registration.agreement_version: version {version!r} is recorded with "
                f"sha256 {row.sha256}, but {cfg.agreement_path} now has sha256 {digest}; "
                "a changed agreement text needs a new version label"
            ]
        )
    return AgreementInfo(row.id, row.version, row.sha256, row.effective_date)


class RegistrationRecords(Protocol):
    """What registration needs stored (``esam_mail.directory.accounts.RegistrationTables``)."""

    async def agreement(self, version: str, sha256: str, now: dt.datetime) -> AgreementRow | None: ...

    async def register(
        self,
        subscriber: NewSubscriber,
        application: NewApplication,
        *,
        login: str,
        password_hash: str,
        owner_key: str | None,
        state: str,
        actor: tuple[str, str],
        detail: dict[str, Any],
        prepare: Callable[[str], Awaitable[None]],
    ) -> RegisteredRows: ...

    async def approve_held(self, login: str, *, actor: tuple[str, str]) -> tuple[int, str]: ...


# --------------------------------------------------------------------------
# Registry and passwords
# --------------------------------------------------------------------------


def registry_from_config(cfg: Config) -> StateRegistry:
    """The state-registry verifier named by ``registration.registry`` (para. 13)."""
    if cfg.registration.registry == "file":
        return FileRegistry(cfg.registration.registry_file)
    return OfflineRegistry()


def generate_password(length: int = 16) -> str:
    """A random password for an applicant who did not choose one (shown once)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def _password_context(
    app: IndividualApplication | LegalEntityApplication | None, raw: Mapping[str, Any]
) -> dict[str, Any]:
    """What a password must not contain: the login, the names, the IIN/BIN (para. 11)."""
    if isinstance(app, IndividualApplication):
        return {"login": app.username, "names": (app.surname, app.given_name, app.patronymic), "ids": (app.iin,)}
    if isinstance(app, LegalEntityApplication):
        rep = app.representative
        names = (app.name, *((rep.surname, rep.given_name, rep.patronymic) if rep else ()))
        return {"login": app.username, "names": names, "ids": (app.bin, rep.iin if rep else None)}
    # the form itself is invalid: check against what was typed
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    return {
        "login": text("username"),
        "names": (text("surname"), text("given_name"), text("patronymic"), text("name")),
        "ids": (text("iin"), text("bin")),
    }


# The registry's reason for a MISMATCH -> the application field it is about.
_MISMATCH_FIELDS: tuple[tuple[str, str], ...] = (
    ("surname", "surname"),
    ("given name", "given_name"),
    ("patronymic", "patronymic"),
    ("birth date", "birth_date"),
    ("sex", "sex"),
    ("representative", "representative.iin"),
    ("head", "representative.iin"),
    ("name", "name"),
)


def _registry_field(answer: RegistryAnswer, kind: str) -> str:
    """Which field a negative registry verdict is about (``registry`` when unknown)."""
    number = "iin" if kind == "individual" else "bin"
    if answer.verdict is Verdict.MISMATCH:
        reason = answer.reason.casefold()
        for needle, field in _MISMATCH_FIELDS:
            if needle in reason:
                return field
        return number
    if answer.verdict in (Verdict.NOT_FOUND, Verdict.DECEASED, Verdict.INACTIVE):
        return number
    return "registry"


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    """The result of a registration.

    ``password`` is the generated password (show it once) or ``None`` when
    the applicant gave one.  ``status`` is the mailbox state: ``active``, or
    ``held`` when the registry could not confirm and the policy is ``hold``.
    """

    address: str
    login: str
    password: str | None
    status: str
    application_id: int
    mailbox_id: int
    registry_verdict: str
    notice_delivered: bool | None = None  # the welcome e-mail (None: no notices configured)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address,
            "login": self.login,
            "status": self.status,
            "application_id": self.application_id,
            "registry_verdict": self.registry_verdict,
        }
        if self.password is not None:
            out["password"] = self.password
        return out


def _json_safe(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The data as submitted, made storable as JSON (dates become ISO text)."""
    safe = json.loads(json.dumps(dict(raw), default=str, ensure_ascii=False))
    assert isinstance(safe, dict)
    return safe


class RegistrationService:
    """Registers mailboxes from applications (para. 5-7, 11, 13).

    Args:
        directory: the directory (``SqlDirectory``).
        store: the mail store; ``store.user(login).create()`` makes the Maildir.
        hasher: the password hasher (argon2id).
        cfg: the configuration (domain, reserved names, registration policy).
        registry: the state-registry verifier; ``None``: from the config.
        notices: the welcome e-mail (``Notices``); ``None``: none is sent.
        records: where applications and mailboxes are written; ``None``: the directory's tables.
    """

    def __init__(
        self,
        directory: SqlDirectory,
        store: Any,
        hasher: Any,
        cfg: Config,
        registry: StateRegistry | None = None,
        notices: Any = None,
        records: RegistrationRecords | None = None,
    ) -> None:
        self.directory = directory
        self.records: RegistrationRecords = records if records is not None else RegistrationTables(directory)
        self.store = store
        self.hasher = hasher
        self.cfg = cfg
        self.registry = registry if registry is not None else registry_from_config(cfg)
        self.policy = RegistryPolicy(cfg.registration.registry_policy)
        self.notices = notices  # services.accounts.notices.Notices: the welcome e-mail

    # -- public API ----------------------------------------------------------------------

    async def register_individual(
        self,
        raw: Mapping[str, Any],
        *,
        channel: Channel,
        office_code: str | None = None,
        employee_id: str | None = None,
        accepted_agreement: str | None,
        password: str | None,
        signature: bytes | None = None,
        signer_fingerprint: str | None = None,
        language: str | None = None,
    ) -> Registered:
        """Register an individual's application (appendix, first form).

        Raises:
            ValidationErrors: every invalid field (nothing is written).
            ValidationError: ``iin`` when the IIN already has an open mailbox
                (one-mailbox-per-IIN policy), or the field the registry
                contradicted (para. 13).
            LoginTaken: the user name was issued before (para. 4, 11).
        """
        return await self._register(
            "individual",
            raw,
            channel=channel,
            office_code=office_code,
            employee_id=employee_id,
            accepted_agreement=accepted_agreement,
            password=password,
            signature=signature,
            signer_fingerprint=signer_fingerprint,
            language=language,
        )

    async def register_legal_entity(
        self,
        raw: Mapping[str, Any],
        *,
        channel: Channel,
        office_code: str | None = None,
        employee_id: str | None = None,
        accepted_agreement: str | None,
        password: str | None,
        signature: bytes | None = None,
        signer_fingerprint: str | None = None,
        language: str | None = None,
    ) -> Registered:
        """Register a legal entity's application (appendix, second form).

        A legal entity may hold several mailboxes.  Raises as
        :meth:`register_individual`.
        """
        return await self._register(
            "legal_entity",
            raw,
            channel=channel,
            office_code=office_code,
            employee_id=employee_id,
            accepted_agreement=accepted_agreement,
            password=password,
            signature=signature,
            signer_fingerprint=signer_fingerprint,
            language=language,
        )

    async def approve(self, login: str, *, actor: tuple[str, str]) -> Any:
        """Release a held mailbox after the manual check (para. 13): it becomes active.

        Raises:
            NotFound: no such mailbox.
            ValidationError: ``login`` when the mailbox is not held.
        """
        try:
            mailbox_id, address = await self.records.approve_held(login, actor=actor)
        except NotHeld as e:
            raise ValidationError("login", M_("{address} is {state}, not held: nothing to approve", address=e.address, state=e.state)) from None
        event(log, "registration.approved", mailbox_id=mailbox_id)
        rec = await self.directory.get(address)
        assert rec is not None
        if self.notices is not None:  # the welcome mail waited for the manual check
            await self.notices.send(NoticeKind.WELCOME, rec)
        return rec

    # -- the procedure -------------------------------------------------------------------

    async def _register(
        self,
        kind: str,
        raw: Mapping[str, Any],
        *,
        channel: str,
        office_code: str | None,
        employee_id: str | None,
        accepted_agreement: str | None,
        password: str | None,
        signature: bytes | None,
        signer_fingerprint: str | None,
        language: str | None = None,
    ) -> Registered:
        app = self._validate(
            kind,
            raw,
            channel=channel,
            office_code=office_code,
            employee_id=employee_id,
            accepted_agreement=accepted_agreement,
            password=password,
            signature=signature,
        )
        agreement = await _ensure_agreement(self.records, self.cfg)
        # para. 5: the consent records the edition the applicant read (its language and hash)
        edition = agreement_edition(self.cfg, language) if language else None

        # para. 13: confirm the identity against the state registry
        answer = await asyncio.to_thread(self._verify, app)
        decision = decide(answer.verdict, self.policy)
        address = f"{app.username}@{self.directory.domain}"
        actor = self._actor(app, channel, employee_id)
        if not decision.accept and not decision.hold:
            await self.directory.audit(
                actor[0],
                actor[1],
                "registration.reject",
                address,
                "denied",
                kind=kind,
                channel=channel,
                verdict=answer.verdict.value,
            )
            event(log, "registration.rejected", channel=channel, verdict=answer.verdict.value)
            raise ValidationError(_registry_field(answer, kind), M_("{decision}: {detail}", decision=decision.reason, detail=answer.reason))
        state = "active" if decision.accept else "held"

        generated = password is None
        secret = generate_password() if password is None else password
        hashed = await asyncio.get_running_loop().run_in_executor(None, self.hasher.hash, secret)

        personal = isinstance(app, IndividualApplication) and self.cfg.registration.one_mailbox_per_iin
        owner_key = app.identifier if personal else None
        now = dt.datetime.now(dt.UTC)
        user: Any = None
        made_maildir = False
        subscriber = NewSubscriber(
            kind=kind,
            iin=app.iin if isinstance(app, IndividualApplication) else None,
            bin=app.bin if isinstance(app, LegalEntityApplication) else None,
            display_name=app.full_name,
            data=app.to_dict(),
            language=normalize_language(language),
            created_at=now,
        )
        application = NewApplication(
            channel=channel,
            office_code=office_code if channel == "office" else None,
            employee_id=employee_id if channel == "office" else None,
            requested_username=app.username,
            data=_json_safe(raw),
            submitted_at=now,
            agreement_version_id=agreement.id,
            agreement_sha256=edition.sha256 if edition else agreement.sha256,
            agreement_language=edition.language if edition else None,
            consent_at=now,
            signature=signature,
            signer_fingerprint=signer_fingerprint,
            registry_verdict=answer.verdict.value,
            status="accepted" if state == "active" else "held",
            signer_role=app.signer_role if isinstance(app, LegalEntityApplication) else None,
            poa_number=app.poa_number if isinstance(app, LegalEntityApplication) else None,
            poa_date=app.poa_date if isinstance(app, LegalEntityApplication) else None,
        )
        detail = {
            "kind": kind,
            "channel": channel,
            "office": office_code if channel == "office" else None,
            "state": state,
            "verdict": answer.verdict.value,
            "agreement": agreement.version,
        }

        async def make_maildir(login_norm: str) -> None:
            # para. 7: the Maildir exists before the mailbox becomes visible (this runs
            # inside the directory transaction, before its commit)
            nonlocal user, made_maildir
            user = self.store.user(login_norm)
            made_maildir = not user.exists()
            await asyncio.to_thread(user.create)

        try:
            try:
                rows = await self.records.register(
                    subscriber, application, login=app.username, password_hash=hashed, owner_key=owner_key,
                    state=state, actor=actor, detail=detail, prepare=make_maildir,
                )
            except OwnerKeyTaken:
                raise ValidationError(
                    "iin", M_("this IIN already has an open mailbox (one personal mailbox per IIN)")
                ) from None
            result = Registered(
                address=rows.address,
                login=rows.login,
                password=secret if generated else None,
                status=state,
                application_id=rows.application_id,
                mailbox_id=rows.mailbox_id,
                registry_verdict=answer.verdict.value,
            )
        except BaseException:
            if made_maildir and user is not None:
                with contextlib.suppress(OSError):
                    shutil.rmtree(user.path)
            raise
        # A failed registration of the same name in another process may have removed
        # a Maildir it made while this one waited; make sure ours is there.
        if not user.exists():
            await asyncio.to_thread(user.create)
        event(
            log,
            "registration.done",
            application_id=result.application_id,
            mailbox_id=result.mailbox_id,
            channel=channel,
            state=state,
        )
        if self.notices is not None and state == "active":  # the welcome mail with the client settings
            rec = await self.directory.get(result.address)
            if rec is not None:
                result = dataclasses.replace(result, notice_delivered=await self.notices.send(NoticeKind.WELCOME, rec))
        return result

    def _validate(
        self,
        kind: str,
        raw: Mapping[str, Any],
        *,
        channel: str,
        office_code: str | None,
        employee_id: str | None,
        accepted_agreement: str | None,
        password: str | None,
        signature: bytes | None,
    ) -> IndividualApplication | LegalEntityApplication:
        """Every check that needs no database, all problems at once."""
        errors: list[ValidationError] = []
        app: IndividualApplication | LegalEntityApplication | None = None
        validate = validate_individual if kind == "individual" else validate_legal_entity
        try:
            app = validate(raw, reserved=reserved_names(self.cfg))
        except ValidationErrors as e:
            errors.extend(e.errors)
        except ValidationError as e:
            errors.append(e)
        if channel not in CHANNELS:
            errors.append(ValidationError("channel", M_("channel must be 'office' or 'online'")))
        if channel == "office":
            # para. 6: at a post office an employee registers the paper application
            if not (office_code or "").strip():
                errors.append(ValidationError("office", M_("the office code is required for the office channel")))
            if not (employee_id or "").strip():
                errors.append(
                    ValidationError("employee", M_("the employee id is required for the office channel"))
                )
        if channel == "online" and not signature:
            # para. 6 sub-para. 1: online applications are signed with EDS
            errors.append(ValidationError("signature", M_("an online application must be signed with EDS")))
        current = self.cfg.registration.agreement_version
        accepted = (accepted_agreement or "").strip()
        if not accepted:
            errors.append(
                ValidationError(
                    "accept_agreement", M_("the applicant must accept the user agreement (version {version})", version=current)
                )
            )
        elif accepted != current:
            errors.append(
                ValidationError(
                    "accept_agreement",
                    M_("version '{accepted}' is not the agreement in force ({version}); "
                       "show the applicant `esam agreement show` and accept that version",
                       accepted=accepted, version=current),
                )
            )
        if password is not None:
            try:
                check_password(password, **_password_context(app, raw))
            except ValidationError as e:
                errors.append(e)
        if errors:
            raise ValidationErrors(errors)
        assert app is not None
        return app

    def _verify(self, app: IndividualApplication | LegalEntityApplication) -> RegistryAnswer:
        if isinstance(app, IndividualApplication):
            return self.registry.verify_person(PersonQuery.from_application(app))
        return self.registry.verify_entity(EntityQuery.from_application(app))

    @staticmethod
    def _actor(
        app: IndividualApplication | LegalEntityApplication, channel: str, employee_id: str | None
    ) -> tuple[str, str]:
        """Who acts (audit): the employee at an office, else the signing subscriber."""
        if channel == "office":
            return "employee", (employee_id or "-").strip()
        return "subscriber", app.identifier


def reserved_names(cfg: Any) -> list[str]:
    """Names nobody may register (see :mod:`esam_mail.services.accounts.logins`)."""
    from esam_mail.services.accounts.logins import reserved_names as names

    return names(cfg)
