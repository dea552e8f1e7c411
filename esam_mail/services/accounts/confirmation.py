"""EDS confirmation of a mailbox (rules, paragraph 12; design R7).

The mailbox owner asks for a **challenge**, signs it with NCALayer (a *detached*
CMS, ``encapsulate: false``) and submits the CMS.  The server verifies the
signature (certificate validity checked *now*, not at the signer-asserted
signing time), compares the signer with the subscriber and records the
certificate.  From then on the mailbox is "EDS-confirmed": enabled for official
electronic document exchange.

The challenge text, which is what the owner signs (UTF-8)::

    esam-confirm:<address>:<nonce>

``nonce`` is 256 random bits (URL-safe Base64).  A challenge lives
``eds.challenge_ttl`` seconds and can be used once: the confirmation marks it
with ``UPDATE eds_challenges SET used_at = now WHERE id = ? AND used_at IS
NULL`` in the same transaction that records the confirmation, so two
concurrent submissions of one CMS give exactly one confirmation.

Who may confirm:

* an individual's mailbox: a certificate whose ``SERIALNUMBER=IIN…`` equals the
  subscriber's IIN (an AUTH or a SIGN certificate; an employee certificate of
  the same person also names them by IIN and is accepted);
* a legal entity's mailbox: a certificate whose ``OU=BIN…`` equals the
  entity's BIN **and** whose role OIDs allow signing for the entity (first
  head or person with signing right, :func:`~esam_mail.services.accounts.eds.role_allows_entity_signing`);
* service mailboxes (postmaster, abuse, …) have no subscriber: never.

Every refusal raises one error (a :class:`ConfirmationError` or an
:class:`~esam_mail.services.accounts.eds.EdsError`, both with ``code`` and ``public``)
and writes nothing but one audit event ``eds.confirm`` with ``outcome =
'denied'`` and the error code.

Pure service layer: no protocol library; the CMS verification runs in a
worker thread (``asyncio.to_thread``) so the event loop never blocks on RSA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from esam_mail.config import Config
from esam_mail.directory.accounts import ChallengeRow, ConfirmationRow, ConfirmationTables, NewConfirmation
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import ConfigError, EsamError
from esam_mail.log import event
from esam_mail.services.accounts.eds import (
    BuiltinVerifier,
    EdsError,
    SignatureVerifier,
    SignerInfo,
    role_allows_entity_signing,
    role_allows_representative_signing,
)

__all__ = [
    "CHALLENGE_PREFIX",
    "Challenge",
    "ChallengeExpired",
    "ChallengeNotFound",
    "ChallengeUsed",
    "ConfirmationError",
    "ConfirmationService",
    "ConfirmationStatus",
    "Confirmed",
    "EdsNotConfigured",
    "MailboxNotConfirmable",
    "MailboxUnknown",
    "RepresentativeRoleNotAllowed",
    "RoleNotAllowed",
    "SignerMismatch",
    "challenge_text",
    "check_signer",
    "verifier_from_config",
]

log = logging.getLogger(__name__)

CHALLENGE_PREFIX = "esam-confirm:"
_NONCE_BYTES = 32  # 256 bits; the design asks for at least 128


# --------------------------------------------------------------------------- errors


class ConfirmationError(EsamError):
    """The confirmation (or the challenge request) was refused.

    Like :class:`~esam_mail.services.accounts.eds.EdsError`: ``code`` is a stable machine
    code (API, audit log), ``public`` is safe to show to the subscriber.  The HTTP
    status is the front-end's choice (``esam_mail.web.statuses``).
    """

    code: str = "confirmation_refused"
    default_public: str = "the EDS confirmation was refused"

    def __init__(self, public: str | None = None) -> None:
        self.public = public or self.default_public
        super().__init__(self.public)


class EdsNotConfigured(ConfirmationError):
    """No trust anchors are configured (``eds.trust_anchors``): nothing can be verified."""

    code = "eds_not_configured"
    default_public = "electronic signatures are not accepted by this server (no trust anchors configured)"
    temporary = True


class MailboxNotConfirmable(ConfirmationError):
    """The mailbox has no subscriber (a service mailbox), or is not active."""

    code = "not_confirmable"
    default_public = "this mailbox cannot be confirmed with an electronic signature"


class MailboxUnknown(MailboxNotConfirmable):
    """No such mailbox."""

    code = "no_such_mailbox"
    default_public = "no such mailbox"


class ChallengeNotFound(ConfirmationError):
    """No challenge was issued for this mailbox, or the given one is not its."""

    code = "challenge_unknown"
    default_public = "no such challenge for this mailbox: ask for a new one"


class ChallengeExpired(ConfirmationError):
    """The challenge's time to live has passed."""

    code = "challenge_expired"
    default_public = "the challenge has expired: ask for a new one"


class ChallengeUsed(ConfirmationError):
    """The challenge was used before (a replayed signature)."""

    code = "challenge_used"
    default_public = "the challenge has already been used: ask for a new one"


class SignerMismatch(ConfirmationError):
    """The certificate names someone else (IIN or BIN differs from the subscriber's)."""

    code = "signer_mismatch"
    default_public = "the certificate does not belong to the owner of this mailbox"


class RoleNotAllowed(ConfirmationError):
    """A legal-entity certificate without the right to sign for the entity (e.g. an employee)."""

    code = "role_not_allowed"
    default_public = (
        "the certificate does not give the right to sign for the organisation "
        "(a first head or a person with signing right is needed)"
    )


class RepresentativeRoleNotAllowed(RoleNotAllowed):
    """``signer_role`` is ``representative`` but the certificate is not an employee's signing
    certificate of the organisation."""

    default_public = (
        "the application says a representative signs, but the certificate is not an "
        "employee's signing certificate of this organisation"
    )


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Challenge:
    """An issued challenge: ``text`` is what the owner signs (UTF-8)."""

    text: str
    nonce: str
    address: str
    expires_at: dt.datetime

    @property
    def content(self) -> bytes:
        """The exact bytes to sign."""
        return self.text.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return {"challenge": self.text, "expires_at": self.expires_at.isoformat()}


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A recorded confirmation."""

    address: str
    fingerprint: str
    serial: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    signer_iin: str | None
    signer_bin: str | None
    confirmed_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "confirmed": True,
            "address": self.address,
            "fingerprint": self.fingerprint,
            "serial": self.serial,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "signer_iin": self.signer_iin,
            "signer_bin": self.signer_bin,
            "confirmed_at": self.confirmed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ConfirmationStatus:
    """Is the mailbox confirmed, and by which certificate (the latest confirmation)."""

    address: str
    confirmed: bool
    latest: Confirmed | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "confirmed": self.confirmed,
            "latest": self.latest.to_dict() if self.latest else None,
        }


def challenge_text(address: str, nonce: str) -> str:
    """The text a subscriber signs: ``esam-confirm:<address>:<nonce>``."""
    return f"{CHALLENGE_PREFIX}{address}:{nonce}"


def test_pki_folder(cfg: Config) -> Path:
    """Where ``esam eds test-pki init`` keeps the staging PKI."""
    return cfg.data_dir / "eds" / "test-pki"


def verifier_from_config(cfg: Config) -> SignatureVerifier | None:
    """The built-in verifier configured by ``[eds]``; ``None`` without trust anchors.

    ``eds.test_ca_mode``: the verifier trusts exactly the test PKI of ``esam eds test-pki
    init`` (``<data_dir>/eds/test-pki/root.pem``) and nothing else; IIN/BIN checksums stay
    enforced (the test PKI issues valid numbers).

    Raises:
        ConfigError: an anchor or CRL file cannot be read (keys named ``eds.*``).
    """
    anchors: list[str] = list(cfg.eds.trust_anchors)
    if cfg.eds.test_ca_mode:
        if anchors:
            raise ConfigError(["eds.test_ca_mode: accepts only the test PKI; leave eds.trust_anchors empty"])
        root = test_pki_folder(cfg) / "root.pem"
        if not root.exists():
            raise ConfigError([f"eds.test_ca_mode: no test PKI at {root}; run `esam eds test-pki init`"])
        anchors = [str(root)]
    if not anchors:
        return None
    try:
        return BuiltinVerifier(
            anchors,
            revocation="crl" if cfg.eds.revocation == "crl" else "off",
            crl_paths=cfg.eds.crl_files,
        )
    except ConfigError as exc:
        # the verifier names its argument crl_paths; the config key is crl_files
        problems = [
            ("crl_files:" + p[len("crl_paths:") :]) if p.startswith("crl_paths:") else p for p in exc.problems
        ]
        raise ConfigError([f"eds.{p}" for p in problems]) from None


def check_signer(
    signer: SignerInfo, *, kind: str, iin: str | None, bin: str | None, signer_role: str = "head"
) -> None:
    """Is ``signer`` the person (``kind='individual'``) or may they sign for the entity?

    For a legal entity, ``signer_role`` is the capacity the application declares: ``head``
    needs a first-head (or signing-right) certificate, ``representative`` an employee's
    (or signing-right) certificate of that BIN (:func:`role_allows_representative_signing`).

    Raises:
        SignerMismatch: IIN (individual) or BIN (legal entity) differs.
        RoleNotAllowed: a legal-entity certificate without a signing role.
        MailboxNotConfirmable: any other kind of subscriber.
    """
    if kind == "individual":
        if not iin or signer.iin != iin:
            raise SignerMismatch("the IIN in the certificate is not the IIN of the applicant/subscriber")
        return
    if kind == "legal_entity":
        if not bin or signer.bin != bin:
            raise SignerMismatch(
                "the certificate is not a certificate of this organisation (its BIN differs)"
            )
        if signer_role == "representative":
            if not role_allows_representative_signing(signer):
                raise RepresentativeRoleNotAllowed()
        elif not role_allows_entity_signing(signer):
            raise RoleNotAllowed()
        return
    raise MailboxNotConfirmable()


# --------------------------------------------------------------------------- service


@dataclass(frozen=True, slots=True)
class _Owner:
    mailbox_id: int
    address: str
    kind: str
    iin: str | None
    bin: str | None


class ConfirmationRecords(Protocol):
    """What the service needs stored (``esam_mail.directory.accounts.ConfirmationTables``)."""

    async def add_challenge(self, mailbox_id: int, nonce: str, *, created_at: dt.datetime,
                            expires_at: dt.datetime, actor: tuple[str, str], address: str) -> None: ...

    async def challenge(self, mailbox_id: int, nonce: str | None) -> ChallengeRow | None: ...

    async def confirm(self, challenge_id: int, mailbox_id: int, new: NewConfirmation, *, used_at: dt.datetime,
                      actor: tuple[str, str], address: str, detail: dict[str, Any]) -> ConfirmationRow | None: ...

    async def latest(self, mailbox_id: int) -> ConfirmationRow | None: ...


class ConfirmationService:
    """Challenges and confirmations over the directory.

    Args:
        directory: the directory (mailbox and holder lookups, the audit log).
        verifier: the CMS verifier; ``None`` refuses everything with
            :class:`EdsNotConfigured` (no trust anchors configured).
        ttl: seconds a challenge lives (``eds.challenge_ttl``).
        clock: returns aware UTC "now" (tests inject one).
        records: where challenges and confirmations are kept; ``None``: the
            directory's tables.
    """

    def __init__(
        self,
        directory: SqlDirectory,
        verifier: SignatureVerifier | None,
        *,
        ttl: int = 300,
        clock: Callable[[], dt.datetime] | None = None,
        records: ConfirmationRecords | None = None,
    ) -> None:
        self.directory = directory
        self.records: ConfirmationRecords = records if records is not None else ConfirmationTables(directory)
        self.verifier = verifier
        self.ttl = dt.timedelta(seconds=ttl)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        #: called with the mailbox id after a confirmation (the notice e-mail to the holder)
        self.on_confirmed: list[Callable[[int], Awaitable[object]]] = []

    # -- challenge -----------------------------------------------------------------------

    async def issue(self, login: str, *, actor: tuple[str, str] | None = None) -> Challenge:
        """Issue a fresh challenge for ``login`` (login or address).

        Earlier challenges of the mailbox stay valid until they expire; ``confirm``
        without an explicit challenge uses the newest one.

        Raises:
            MailboxNotConfirmable: the mailbox does not exist, is not active, or has no
                subscriber (a service mailbox).  Nothing is written but a denied audit event.
        """
        actor = actor or ("subscriber", login)
        now = self.clock()
        try:
            owner = await self._owner(login)
            nonce = secrets.token_urlsafe(_NONCE_BYTES)
            expires = now + self.ttl
            await self.records.add_challenge(owner.mailbox_id, nonce, created_at=now, expires_at=expires,
                                             actor=actor, address=owner.address)
        except (ConfirmationError, EdsError) as exc:
            await self._denied(actor, "eds.challenge", login, exc)
            raise
        event(log, "eds.challenge", mailbox_id=owner.mailbox_id)
        return Challenge(challenge_text(owner.address, nonce), nonce, owner.address, expires)

    # -- confirmation --------------------------------------------------------------------

    async def confirm(
        self,
        login: str,
        cms: bytes | str,
        *,
        challenge: str | None = None,
        actor: tuple[str, str] | None = None,
    ) -> Confirmed:
        """Verify ``cms`` (detached, over the challenge text) and confirm the mailbox.

        Args:
            login: the mailbox (login or address).
            cms: the CMS as DER, PEM or Base64 (what NCALayer returns).
            challenge: the challenge text that was signed; ``None`` takes the
                newest challenge issued for the mailbox.
            actor: who acts, for the audit log (default the subscriber).

        Raises:
            ConfirmationError: no/unknown/expired/used challenge, signer mismatch,
                role not allowed, service mailbox, EDS not configured.
            EdsError: the signature or certificate is not accepted.

        On any error nothing changes but one ``eds.confirm`` audit event
        (``denied``, with the error code).
        """
        actor = actor or ("subscriber", login)
        target = login
        try:
            if self.verifier is None:
                raise EdsNotConfigured()
            owner = await self._owner(login)
            target = owner.address
            row = await self._challenge(owner, challenge)
            if row.used_at is not None:
                raise ChallengeUsed()
            now = self.clock()
            if now >= row.expires_at:
                raise ChallengeExpired()
            content = challenge_text(owner.address, row.nonce).encode("utf-8")
            # Validity is checked now: a backdated signing-time cannot revive an expired cert.
            signer = await asyncio.to_thread(self.verifier.verify, cms, content, at=now)
            check_signer(signer, kind=owner.kind, iin=owner.iin, bin=owner.bin)
            confirmed = await self._record(owner, row.id, signer, actor)
        except (ConfirmationError, EdsError) as exc:
            await self._denied(actor, "eds.confirm", target, exc)
            raise
        event(log, "eds.confirmed", mailbox_id=owner.mailbox_id)
        for hook in self.on_confirmed:
            try:
                await hook(owner.mailbox_id)
            except Exception:  # a notice never undoes a confirmation
                log.exception("eds: confirmation hook failed")
        return confirmed

    async def status(self, login: str) -> ConfirmationStatus:
        """Whether the mailbox is EDS-confirmed, with its latest confirmation.

        Raises:
            MailboxUnknown: no such mailbox.
        """
        m = await self.directory.get(login)
        if m is None:
            raise MailboxUnknown()
        c = await self.records.latest(m.id)
        latest = _confirmed(m.address, c) if c is not None else None
        return ConfirmationStatus(m.address, bool(m.eds_confirmed), latest)

    # -- internals -----------------------------------------------------------------------

    async def _owner(self, login: str) -> _Owner:
        m = await self.directory.get(login)
        if m is None:
            raise MailboxUnknown()
        if m.state != "active":
            raise MailboxNotConfirmable(f"the mailbox is {m.state}: only an active mailbox can be confirmed")
        sub = await self.directory.owner(m.subscriber_id)
        if sub is None or sub.kind not in ("individual", "legal_entity"):
            raise MailboxNotConfirmable(
                "a service mailbox has no subscriber and cannot be confirmed with an electronic signature"
            )
        return _Owner(m.id, m.address, sub.kind, sub.iin, sub.bin)

    async def _challenge(self, owner: _Owner, text: str | None) -> ChallengeRow:
        nonce: str | None = None
        if text is not None:
            text = text.strip()
            nonce = text.rpartition(":")[2]
            if not text.startswith(CHALLENGE_PREFIX) or not nonce or len(nonce) > 128:
                raise ChallengeNotFound("this is not a challenge issued by this server")
        row = await self.records.challenge(owner.mailbox_id, nonce)
        if row is None or row.mailbox_id != owner.mailbox_id:
            raise ChallengeNotFound()
        if text is not None and text != challenge_text(owner.address, row.nonce):
            raise ChallengeNotFound()
        return row

    async def _record(
        self, owner: _Owner, challenge_id: int, signer: SignerInfo, actor: tuple[str, str]
    ) -> Confirmed:
        now = self.clock()
        new = NewConfirmation(
            cert_fingerprint=signer.fingerprint,
            cert_serial=signer.serial,
            cert_issuer=signer.issuer,
            not_before=signer.not_before,
            not_after=signer.not_after,
            signer_iin=signer.iin,
            signer_bin=signer.bin,
            confirmed_at=now,
            certificate=signer.certificate,
            issuer_certificate=signer.issuer_certificate or None,
        )
        detail = {"fingerprint": signer.fingerprint, "serial": signer.serial, "issuer": signer.issuer,
                  "signer_bin": signer.bin}
        row = await self.records.confirm(challenge_id, owner.mailbox_id, new, used_at=now, actor=actor,
                                         address=owner.address, detail=detail)
        if row is None:
            raise ChallengeUsed()  # a concurrent confirmation won
        return _confirmed(owner.address, row)

    async def _denied(self, actor: tuple[str, str], action: str, target: str, exc: EsamError) -> None:
        code = getattr(exc, "code", type(exc).__name__)
        await self.directory.audit(actor[0], actor[1][:128], action, target[:320], "denied", code=code)
        event(log, f"{action}.denied", logging.WARNING, code=code)


def _confirmed(address: str, c: ConfirmationRow) -> Confirmed:
    return Confirmed(
        address=address,
        fingerprint=c.cert_fingerprint,
        serial=c.cert_serial,
        issuer=c.cert_issuer,
        not_before=c.not_before,
        not_after=c.not_after,
        signer_iin=c.signer_iin,
        signer_bin=c.signer_bin,
        confirmed_at=c.confirmed_at,
    )
