"""Online applications signed with EDS (rules, paragraph 6 sub-paragraph 1; design R1).

The applicant's browser (or any client) sends the application as JSON together
with a **detached** CMS over its canonical bytes
(:func:`esam_mail.services.accounts.application.canonical_json` of the *validated*
application; :meth:`OnlineApplications.canonical` returns them so the client
signs exactly what the server verifies).  :meth:`OnlineApplications.submit`:

1. validates the application (every field problem at once, nothing written);
2. verifies the CMS over the canonical bytes with certificate validity checked
   **now** (a signer-asserted signing time cannot revive an expired
   certificate);
3. requires a SIGN certificate (keyUsage nonRepudiation or EKU
   emailProtection): an application is an electronic document, and NCA AUTH
   keys are for logging in;
4. checks the signer is the applicant: the IIN of an individual, or the BIN of
   a legal entity plus a role allowed to sign for it (first head, signing
   right);
5. runs the **same** registration as the office channel
   (:class:`~esam_mail.services.accounts.registration.RegistrationService`,
   ``channel='online'``) with the CMS (DER) and the certificate fingerprint
   recorded on the application.

A refused signature raises an :class:`~esam_mail.services.accounts.eds.EdsError` or a
:class:`~esam_mail.services.accounts.confirmation.ConfirmationError` and writes nothing
but one ``registration.online`` audit event (``denied``, with the code).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from esam_mail.config import Config
from esam_mail.errors import EsamError, ValidationError
from esam_mail.log import event
from esam_mail.services.accounts.application import (
    IndividualApplication,
    LegalEntityApplication,
    ValidationErrors,
    canonical_json,
    signed_document,
    validate_individual,
    validate_legal_entity,
)
from esam_mail.services.accounts.confirmation import (
    ConfirmationError,
    ConfirmationService,
    EdsNotConfigured,
    check_signer,
    verifier_from_config,
)
from esam_mail.services.accounts.eds import (
    BadSignature,
    EdsError,
    KeyUsageNotAllowed,
    SignatureVerifier,
    decode_cms,
    is_sign_certificate,
)
from esam_mail.services.accounts.identity import M_
from esam_mail.services.accounts.logins import reserved_names
from esam_mail.services.accounts.registration import (
    AgreementEdition,
    Registered,
    RegistrationService,
    agreement_edition,
    agreement_sha256,
    agreement_text,
)

__all__ = ["KINDS", "Agreement", "ConsentNotSigned", "EdsServices", "OnlineApplications", "eds_services"]

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("individual", "legal_entity")


class ConsentNotSigned(BadSignature):
    """The CMS covers the bare application but not the consent (agreement version, SHA-256,
    language): it proves no consent to the user agreement (para. 5)."""

    code = "consent_not_signed"
    default_public = (
        "the signature does not cover the consent to the user agreement: sign the document "
        "returned by /api/v1/applications/canonical (application, agreement version, its "
        "SHA-256 and language)"
    )


@dataclass(frozen=True, slots=True)
class Agreement:
    """The user agreement in force (para. 5): what the applicant reads and accepts."""

    version: str
    sha256: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "sha256": self.sha256, "text": self.text}


class OnlineApplications:
    """Applications submitted online with a detached CMS (see the module docstring).

    Args:
        registration: the registration service shared with the office channel.
        verifier: the CMS verifier; ``None`` refuses with ``eds_not_configured``.
        cfg: the configuration (reserved names, agreement).
        require_sign_certificate: refuse AUTH certificates (default True).
        clock: aware UTC "now" for the certificate validity check.
    """

    def __init__(
        self,
        registration: RegistrationService,
        verifier: SignatureVerifier | None,
        cfg: Config,
        *,
        require_sign_certificate: bool = True,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.registration = registration
        self.verifier = verifier
        self.cfg = cfg
        self.require_sign_certificate = require_sign_certificate
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def agreement(self) -> Agreement:
        """The agreement in force.

        Raises:
            ConfigError: the agreement file cannot be read.
        """
        return Agreement(
            self.cfg.registration.agreement_version, agreement_sha256(self.cfg), agreement_text(self.cfg)
        )

    def validate(self, raw: object, kind: object) -> IndividualApplication | LegalEntityApplication:
        """The validated application of ``kind``.

        Raises:
            ValidationErrors: every problem (``kind``, ``application`` or form fields).
        """
        if kind not in KINDS:
            raise ValidationErrors([ValidationError("kind", M_("kind must be 'individual' or 'legal_entity'"))])
        if not isinstance(raw, Mapping):
            raise ValidationErrors([ValidationError("application", M_("the application must be a JSON object"))])
        validate = validate_individual if kind == "individual" else validate_legal_entity
        try:
            return validate(raw, reserved=reserved_names(self.cfg))
        except ValidationErrors:
            raise
        except ValidationError as e:
            raise ValidationErrors([e]) from None

    def canonical(self, raw: object, kind: object, language: str | None = None) -> bytes:
        """The bytes the applicant signs: the application and the consent to the agreement in
        force in *language* (:func:`~esam_mail.services.accounts.application.signed_document`).

        Raises:
            ValidationErrors: the application is invalid (nothing to sign).
        """
        return self.prepare(raw, kind, language)[0]

    def prepare(self, raw: object, kind: object, language: str | None = None) -> tuple[bytes, AgreementEdition]:
        """:meth:`canonical` and the agreement edition it covers."""
        app = self.validate(raw, kind)
        edition = agreement_edition(self.cfg, language)
        return self._document(app, edition), edition

    @staticmethod
    def _document(app: IndividualApplication | LegalEntityApplication, edition: AgreementEdition) -> bytes:
        return signed_document(app, agreement_version=edition.version, agreement_sha256=edition.sha256,
                               language=edition.language)

    async def submit(
        self,
        raw: object,
        *,
        kind: object,
        signature: bytes | str | None,
        accepted_agreement: str | None,
        password: str | None,
        language: str | None = None,
    ) -> Registered:
        """Verify the signature, check the signer is the applicant, register (``online``).

        The signature must cover :meth:`canonical` for the same *language*: the application
        and the consent (agreement version in force, the SHA-256 of its text in that language,
        the language).  One over the bare application is refused (``consent_not_signed``).

        Raises:
            ValidationErrors: invalid fields, missing signature or agreement (nothing written).
            EdsError: the signature or certificate is not accepted.
            ConfirmationError: the signer is not the applicant (``signer_mismatch``), may
                not sign for the entity (``role_not_allowed``), or EDS is not configured.
            LoginTaken: the user name was issued before.
            ValidationError: as :meth:`RegistrationService.register_individual`.
        """
        problems: list[ValidationError] = []
        app = None
        try:
            app = self.validate(raw, kind)
        except ValidationErrors as e:
            problems.extend(e.errors)
        if not signature:
            problems.append(
                ValidationError("signature", M_("sign the application with EDS (a Base64 detached CMS)"))
            )
        if problems:
            raise ValidationErrors(problems)
        assert app is not None and signature is not None and isinstance(raw, Mapping)
        target = f"{app.username}@{self.registration.directory.domain}"
        try:
            if self.verifier is None:
                raise EdsNotConfigured()
            der = decode_cms(signature)
            edition = agreement_edition(self.cfg, language)
            signer = await asyncio.to_thread(self._verify_consent, der, app, edition)
            if self.require_sign_certificate and not is_sign_certificate(signer):
                raise KeyUsageNotAllowed(
                    "an application must be signed with a signing (SIGN) certificate, "
                    "not an authentication (AUTH) one"
                )
            if isinstance(app, IndividualApplication):
                check_signer(signer, kind="individual", iin=app.iin, bin=None)
            else:
                check_signer(signer, kind="legal_entity", iin=None, bin=app.bin, signer_role=app.signer_role)
        except (EdsError, ConfirmationError) as exc:
            code = getattr(exc, "code", type(exc).__name__)
            await self.registration.directory.audit(
                "subscriber", app.identifier, "registration.online", target, "denied", code=code
            )
            event(log, "registration.online.denied", logging.WARNING, code=code)
            raise
        register = (
            self.registration.register_individual
            if isinstance(app, IndividualApplication)
            else self.registration.register_legal_entity
        )
        return await register(
            raw,
            channel="online",
            accepted_agreement=accepted_agreement,
            password=password,
            signature=der,
            signer_fingerprint=signer.fingerprint,
            language=edition.language,
        )

    def _verify_consent(
        self, der: bytes, app: IndividualApplication | LegalEntityApplication, edition: AgreementEdition
    ) -> Any:
        """Verify *der* over the signed document (worker thread).  When it does not match, find
        out whether it covers the bare application (schema 1): that is ``consent_not_signed``."""
        assert self.verifier is not None
        now = self.clock()
        try:
            return self.verifier.verify(der, self._document(app, edition), at=now)
        except BadSignature:
            try:
                self.verifier.verify(der, canonical_json(app), at=now)
            except EdsError:
                raise BadSignature(
                    "the signature does not match the document for this application, agreement "
                    f"version {edition.version} and language {edition.language}"
                ) from None
            raise ConsentNotSigned() from None


@dataclass
class EdsServices:
    """The EDS-related services of one process (kept in ``Services.extras['eds']``)."""

    verifier: SignatureVerifier | None
    confirmations: ConfirmationService
    applications: OnlineApplications
    registration: RegistrationService


def eds_services(services: Any) -> EdsServices:
    """The EDS services for an :class:`esam_mail.app.Services`, built once and cached in
    its ``extras['eds']``.

    Raises:
        ConfigError: ``eds.trust_anchors`` / ``eds.crl_files`` cannot be read.
    """
    got = services.extras.get("eds")
    if isinstance(got, EdsServices):
        return got
    cfg: Config = services.cfg
    verifier = verifier_from_config(cfg)
    from esam_mail.services.accounts.notices import NoticeKind, Notices

    notices = Notices.from_services(services)
    registration = RegistrationService(services.directory, services.store, services.hasher, cfg, notices=notices)
    confirmations = ConfirmationService(services.directory, verifier, ttl=cfg.eds.challenge_ttl)

    async def confirmed(mailbox_id: int) -> None:
        rec = await services.directory.by_id(mailbox_id)
        if rec is not None:
            await notices.send(NoticeKind.EDS_CONFIRMED, rec)

    confirmations.on_confirmed.append(confirmed)
    built = EdsServices(
        verifier=verifier,
        confirmations=confirmations,
        applications=OnlineApplications(registration, verifier, cfg),
        registration=registration,
    )
    services.extras["eds"] = built
    return built


def error_code(exc: EsamError) -> str:
    """The machine code of an EDS/confirmation error (for logs and replies)."""
    return str(getattr(exc, "code", type(exc).__name__))
