"""The official electronic documents channel (rules, paragraphs 12-13).

A **registered sender** (a state body, ``esam official sender add``) hands in a document
for a recipient named by IIN or BIN.  The service

1. checks the document and its CMS signature (the sender's own EDS, verified with
   :mod:`esam_mail.services.accounts.eds`; when the sender registered a BIN the signer must belong
   to it) or, when the sender sends it unsigned, signs it on the sender's behalf with the
   operator's key (a detached CMS, ``signed_by = "gateway"``);
2. records SUBMITTED evidence;
3. resolves the IIN/BIN to the holder's **EDS-confirmed** active mailbox (the latest EDS
   confirmation must not have lapsed, see :mod:`esam_mail.services.accounts.eds_recheck`).  There is
   none: REJECTED evidence and :class:`NoConfirmedMailbox`, so that the sender can fall
   back to paper (hybrid mail).  The refusal does not say *why* there is none (no mailbox,
   unconfirmed, suspended): that is the holder's business, and goes to the audit log only;
4. delivers it through :meth:`DeliveryService.deliver` (the same path SMTP uses) as an
   e-mail with the document and its signature attached, and records DELIVERED evidence;
5. follows the message to its first reading: when the Maildir file gets the ``S``
   (``\\Seen``) flag, whether by an IMAP FETCH of the body, a STORE, or webmail, RETRIEVED
   evidence is recorded.  The hook is the store's change notification (the one IMAP IDLE
   uses, which reaches every process of the node, or every node with PostgreSQL), so no
   front-end has to know about official mail.  A periodic sweep catches anything a lost
   notification missed, issues EXPIRED evidence after ``official.retrieval_days``, and
   applies the retention periods.

Each evidence event after SUBMITTED is also mailed to the sender's ``notify_address``
with the chain so far attached (``evidence-<id>.json``).

Recording RETRIEVED is guarded by ``UPDATE ... WHERE state = 'delivered'``: when several
processes notice the same reading, exactly one writes the evidence.

Pure service layer: no protocol library.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import logging
import mimetypes
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Any

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from esam_mail import fsio
from esam_mail.config import OfficialConfig
from esam_mail.directory.official import Builder, Conflict, MessageRow, OfficialTables, SenderRow, Target
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import DeliveryError, EsamError, NotFound, ValidationError
from esam_mail.i18n import Translator, domain_message
from esam_mail.log import event
from esam_mail.services.accounts.eds import EdsError, SignatureVerifier, decode_cms
from esam_mail.services.accounts.identity import validate_bin, validate_iin
from esam_mail.services.mailflow.delivery import DeliveryService, Route, Transaction
from esam_mail.services.official.evidence import OperatorKey, chain_document, make_record, record_hash

M_ = domain_message("official")

__all__ = [
    "OFFICIAL_KICK",
    "NoConfirmedMailbox",
    "OfficialError",
    "OfficialService",
    "SenderRecord",
    "SignatureRefused",
    "Submission",
]

log = logging.getLogger(__name__)

#: Published on the store notifier when official deliveries change, so that every
#: process reloads the set of messages it watches for a first reading.
OFFICIAL_KICK = ("", "esam:official")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_FILENAME_BAD = re.compile(r"[\x00-\x1f\x7f/\\]")


class OfficialError(EsamError):
    """A refusal of the official channel: ``code`` (stable), ``public`` (safe to show)."""

    code = "official_refused"

    def __init__(self, public: str, *, message_id: str | None = None) -> None:
        super().__init__(public)
        self.public = public
        self.message_id = message_id


class NoConfirmedMailbox(OfficialError):
    """The IIN/BIN has no EDS-confirmed mailbox: send it on paper (hybrid mail)."""

    code = "no_confirmed_mailbox"


class SignatureRefused(OfficialError):
    """The sender's CMS signature is not accepted."""

    code = "signature_refused"


class UnknownSender(OfficialError):
    code = "unknown_sender"


SenderRecord = SenderRow


def sender_dict(r: SenderRow) -> dict[str, Any]:
    return {"name": r.name, "display_name": r.display_name, "bin": r.bin,
            "cert_fingerprint": r.cert_fingerprint, "signed_requests": bool(r.public_key_pem),
            "notify_address": r.notify_address, "active": r.active}


@dataclass(frozen=True, slots=True)
class Submission:
    message_id: str
    state: str
    address: str | None
    evidence: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.message_id, "state": self.state, "evidence": self.evidence}


def normalize_fingerprint(value: str) -> str:
    """``AB:CD:...`` or ``abcd...`` -> 64 lower-case hex digits (SHA-256)."""
    fp = value.replace(":", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", fp):
        raise ValidationError("cert_fingerprint", M_("a SHA-256 fingerprint: 64 hex digits"))
    return fp


def parse_recipient(value: str) -> tuple[str, str]:
    """``IIN900101300811``, ``BIN940140000385``, or 12 digits with a kind prefix -> (kind, id)."""
    text = value.strip().upper()
    if text.startswith("IIN"):
        return "iin", validate_iin(text[3:], field="recipient").value
    if text.startswith("BIN"):
        return "bin", validate_bin(text[3:], field="recipient").value
    raise ValidationError("recipient", M_("IIN<12 digits> or BIN<12 digits>"))


def _clean_filename(name: str) -> str:
    name = _FILENAME_BAD.sub("_", name.strip())[:200]
    if not name or name in (".", ".."):
        raise ValidationError("filename", M_("a file name is required"))
    return name


def _is_encapsulated(cms_der: bytes) -> bool:
    try:
        info = asn1_cms.ContentInfo.load(cms_der)
        return info["content"]["encap_content_info"]["content"].native is not None
    except (ValueError, TypeError, KeyError):
        return False


class OfficialService:
    """Senders, submissions, evidence and the retrieval watcher over the directory.

    Args:
        directory: the directory.
        delivery: the delivery service (the Maildir write, as for SMTP).
        store: the mail store (reads flags of watched messages).
        operator: the evidence key (``None``: the channel refuses everything).
        verifier: CMS verifier for senders' signatures (``None``: only gateway signing).
        cfg: the ``[official]`` section.
        data_dir: where the operator's document copies live (``official/docs``).
        clock: aware-UTC now (tests inject one).
    """

    def __init__(
        self,
        directory: SqlDirectory,
        delivery: DeliveryService,
        store: Any,
        operator: OperatorKey | None,
        verifier: SignatureVerifier | None,
        cfg: OfficialConfig,
        *,
        data_dir: Path,
        notifier: Any = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.directory = directory
        self.tables = OfficialTables(directory)
        self.delivery = delivery
        self.store = store
        self.operator = operator
        self.verifier = verifier
        self.cfg = cfg
        self.docs_dir = data_dir / "official" / "docs"
        self.notifier = notifier
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.domain = directory.domain
        #: login -> {maildir key -> message row id}: delivered, not yet retrieved
        self._pending: dict[str, dict[str, int]] = {}
        self._checking: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_purge: dt.datetime | None = None

    # ------------------------------------------------------------------ senders

    async def add_sender(
        self,
        name: str,
        display_name: str,
        *,
        bin: str | None = None,
        cert_fingerprint: str | None = None,
        public_key_pem: str | None = None,
        notify_address: str | None = None,
        actor: tuple[str, str],
    ) -> SenderRow:
        """Register a sender.  One of ``cert_fingerprint`` / ``public_key_pem`` is required.

        Raises:
            ValidationError: naming the field (name taken, bad fingerprint, key, BIN, address).
        """
        name = name.strip().lower()
        if not _NAME.match(name):
            raise ValidationError("name", M_("lower-case letters, digits, '.', '_' or '-', at most 63"))
        display_name = display_name.strip()
        if not display_name or len(display_name) > 512:
            raise ValidationError("display_name", M_("1 to 512 characters"))
        if bin:
            bin = validate_bin(bin, field="bin").value
        fp = normalize_fingerprint(cert_fingerprint) if cert_fingerprint else None
        if public_key_pem:
            try:
                serialization.load_pem_public_key(public_key_pem.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                raise ValidationError("public_key", M_("not a PEM public key")) from None
        if not fp and not public_key_pem:
            raise ValidationError("cert_fingerprint", M_("give a client certificate fingerprint or a public key"))
        if notify_address and ("@" not in notify_address or len(notify_address) > 320):
            raise ValidationError("notify_address", M_("an e-mail address"))
        try:
            return await self.tables.add_sender(
                actor=actor, name=name, display_name=display_name, bin=bin, cert_fingerprint=fp,
                public_key_pem=public_key_pem, notify_address=notify_address or None)
        except Conflict:
            raise ValidationError("name", M_("a sender named '{name}' or with this certificate exists", name=name)) from None

    async def list_senders(self, *, include_removed: bool = False) -> list[SenderRow]:
        return await self.tables.list_senders(include_removed=include_removed)

    async def remove_sender(self, name: str, *, actor: tuple[str, str]) -> SenderRow:
        """Retire a sender (the row stays: evidence names it)."""
        return await self.tables.remove_sender(name.strip().lower(), self.clock(), actor=actor)

    async def sender(self, *, name: str | None = None, fingerprint: str | None = None) -> SenderRow | None:
        """An active sender by name or by client-certificate fingerprint."""
        if fingerprint is not None:
            return await self.tables.sender(fingerprint=fingerprint.replace(":", "").lower())
        if name is not None:
            return await self.tables.sender(name=name.strip().lower())
        return None

    # ------------------------------------------------------------------ submission

    async def submit(
        self,
        sender: SenderRow,
        *,
        recipient: str,
        document: bytes,
        filename: str,
        subject: str,
        signature: bytes | str | None = None,
        text: str = "",
    ) -> Submission:
        """Hand in one document for one IIN/BIN (see the module docstring).

        Raises:
            ValidationError: bad recipient, file name, subject or size (nothing recorded).
            SignatureRefused: the sender's signature is not accepted (nothing recorded).
            NoConfirmedMailbox: SUBMITTED and REJECTED evidence were recorded; the
                exception carries the message id.
            OfficialError: the delivery itself failed (REJECTED evidence recorded).
        """
        if self.operator is None:
            raise OfficialError("the official channel has no operator key (run `esam init`)")
        if not sender.active:
            raise UnknownSender("this sender is not registered")
        kind, ident = parse_recipient(recipient)
        filename = _clean_filename(filename)
        subject = " ".join(subject.split())
        if not subject or len(subject) > 500:
            raise ValidationError("subject", M_("1 to 500 characters"))
        if not document:
            raise ValidationError("document", M_("the document is empty"))
        if len(document) > self.cfg.max_document_bytes:
            raise ValidationError("document", M_("larger than {max_bytes} bytes", max_bytes=self.cfg.max_document_bytes))
        if len(text) > 10_000:
            raise ValidationError("text", M_("at most 10000 characters"))
        if signature is not None:
            cms, signer_fp = await self._check_signature(sender, signature, document)
            signed_by = "sender"
        else:
            cms = await asyncio.to_thread(self.operator.sign_document, document)
            signer_fp, signed_by = self.operator.fingerprint, "gateway"

        now = self.clock()
        public_id = "OM" + now.strftime("%Y%m%d") + secrets.token_hex(6).upper()
        keep = now + dt.timedelta(days=self.cfg.evidence_retention_days)
        target, why = await self.tables.resolve(kind, ident, now)
        msg, _ = await self.tables.create(
            dict(public_id=public_id, sender_id=sender.id, recipient_kind=kind, recipient_id=ident,
                 subject=subject, document_name=filename, document_sha256=hashlib.sha256(document).hexdigest(),
                 signed_by=signed_by, signer_fingerprint=signer_fp, state="submitted", submitted_at=now,
                 purge_after=keep),
            self._builder(sender, "SUBMITTED", now), at=now, purge_after=keep)
        if target is None:
            await self.tables.advance(
                msg.id, self._builder(sender, "REJECTED", now, reason="no_confirmed_mailbox"), at=now,
                purge_after=keep, from_states=("submitted",), to_state="rejected",
                audit=("official", sender.name, "official.reject", f"{kind}:{ident}", "denied",
                       {"id": public_id, "why": why}))
            event(log, "official.rejected", id=public_id, why=why)
            await self._mail_sender(msg.id)
            raise NoConfirmedMailbox(
                f"the holder of {kind.upper()} {ident} has no mailbox confirmed with an electronic "
                "signature: send the document on paper (hybrid mail)",
                message_id=public_id,
            )

        data = self._compose(public_id, sender, target, subject, text, filename, document, cms, now)
        tx = Transaction(mail_from="", routes=[Route("local", target.address, login=target.login_norm,
                                                     domain=self.domain, quota=target.quota_bytes)],
                         data=data, principal=None, peer="127.0.0.1", helo="official", tls=True,
                         session=public_id)
        try:
            written = await self.delivery.deliver(tx)
        except DeliveryError as exc:
            reason = "mailbox_full" if exc.code == 552 else "delivery_failed"
            await self.tables.advance(
                msg.id, self._builder(sender, "REJECTED", self.clock(), reason=reason), at=self.clock(),
                purge_after=keep, from_states=("submitted",), to_state="rejected")
            await self._mail_sender(msg.id)
            raise OfficialError(f"the document could not be delivered ({exc.public})", message_id=public_id) from None
        key = written.get(target.login_norm)
        now = self.clock()
        await self.tables.advance(
            msg.id, self._builder(sender, "DELIVERED", now, address=target.address), at=now, purge_after=keep,
            from_states=("submitted",), to_state="delivered",
            updates=dict(mailbox_id=target.id, login_norm=target.login_norm, address=target.address,
                         maildir_key=key, delivered_at=now,
                         retrieval_deadline=now + dt.timedelta(days=self.cfg.retrieval_days)),
            audit=("official", sender.name, "official.deliver", target.address, "ok", {"id": public_id}))
        await asyncio.to_thread(self._keep_copy, public_id, data)
        if key:
            self._pending.setdefault(target.login_norm, {})[key] = msg.id
        self._kick()
        event(log, "official.delivered", id=public_id, signed_by=signed_by)
        await self._mail_sender(msg.id)
        return Submission(public_id, "delivered", target.address, await self.evidence(public_id))

    async def _check_signature(
        self, sender: SenderRow, signature: bytes | str, document: bytes
    ) -> tuple[bytes, str]:
        if self.verifier is None:
            raise SignatureRefused("signatures cannot be verified here (no EDS trust anchors configured)")
        try:
            der = decode_cms(signature)
            signer = await asyncio.to_thread(self.verifier.verify, der, document, at=self.clock())
        except EdsError as exc:
            raise SignatureRefused(f"the document signature is not accepted: {exc.public}") from None
        if sender.bin and signer.bin != sender.bin:
            raise SignatureRefused("the document is not signed by a certificate of the sending organisation")
        return der, signer.fingerprint

    def _compose(
        self, public_id: str, sender: SenderRecord, target: Target, subject: str, text: str,
        filename: str, document: bytes, cms: bytes, now: dt.datetime,
    ) -> bytes:
        kk, ru = Translator("official", "kk"), Translator("official", "ru")
        msg = EmailMessage()
        msg["From"] = formataddr((sender.display_name, f"official@{self.domain}"))
        msg["To"] = target.address
        if sender.notify_address:
            msg["Reply-To"] = sender.notify_address
        msg["Subject"] = subject
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid(idstring=public_id, domain=self.domain)
        msg["X-Esam-Official-Id"] = public_id
        intro = []
        for tr in (kk, ru):
            intro.append(tr("An official electronic document from {sender}.", sender=sender.display_name))
            intro.append(tr("The document and its electronic signature are attached. Tracking number: {id}.",
                            id=public_id))
            intro.append("")
        body = "\n".join(intro) + ("\n" + text.strip() + "\n" if text.strip() else "")
        msg.set_content(body)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(document, maintype=maintype, subtype=subtype, filename=filename)
        if _is_encapsulated(cms):
            msg.add_attachment(cms, maintype="application", subtype="pkcs7-mime", filename=filename + ".p7m")
        else:
            msg.add_attachment(cms, maintype="application", subtype="pkcs7-signature", filename=filename + ".p7s")
        return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))

    def _keep_copy(self, public_id: str, data: bytes) -> None:
        self.docs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fsio.atomic_write(self.docs_dir / f"{public_id}.eml", data, mode=0o600)

    # ------------------------------------------------------------------ evidence

    def _builder(self, sender: SenderRow, ev: str, at: dt.datetime, *, reason: str | None = None,
                 address: str | None = None) -> Builder:
        """The callback that makes and signs the next record inside the directory's transaction."""
        operator = self.operator
        assert operator is not None

        def build(msg: MessageRow, seq: int, prev: str | None) -> tuple[dict[str, Any], str]:
            rec = make_record(
                message_id=msg.public_id, seq=seq, event=ev, at=at, prev_hash=prev,
                sender={"name": sender.name, "display_name": sender.display_name, "bin": sender.bin},
                recipient={"kind": msg.recipient_kind, "id": msg.recipient_id, "address": address or msg.address},
                document={"name": msg.document_name, "sha256": msg.document_sha256, "signed_by": msg.signed_by,
                          "signer_cert_sha256": msg.signer_fingerprint},
                reason=reason,
            )
            signed = operator.sign_record(rec)
            return signed, record_hash(signed)

        return build

    async def evidence(self, public_id: str, *, sender: SenderRow | None = None) -> list[dict[str, Any]]:
        """The signed records of a message, oldest first.

        Raises:
            NotFound: no such message, or (with ``sender``) not that sender's.
        """
        msg = await self.tables.message(public_id=public_id)
        if sender is not None and msg.sender_id != sender.id:
            raise NotFound(f"official message {public_id}")
        return await self.tables.records(msg.id)

    async def chain(self, public_id: str, *, sender: SenderRow | None = None) -> dict[str, Any]:
        """The exportable chain document (``esam evidence verify`` reads it)."""
        return chain_document(public_id, await self.evidence(public_id, sender=sender))

    async def _mail_sender(self, message_row_id: int) -> None:
        """Mail the latest event with the chain so far to the sender's notify address."""
        msg = await self.tables.message(row_id=message_row_id)
        snd = await self.tables.sender(sender_id=msg.sender_id)
        if snd is None or not snd.notify_address:
            return
        doc = chain_document(msg.public_id, await self.tables.records(msg.id))
        last = doc["records"][-1]
        en = Translator("official", "en")
        ru = Translator("official", "ru")
        m = EmailMessage()
        m["From"] = formataddr(("", f"official@{self.domain}"))
        m["To"] = snd.notify_address
        m["Subject"] = f"[{msg.public_id}] {last['event']}: {msg.subject}"[:900]
        m["Date"] = format_datetime(self.clock())
        m["Message-ID"] = make_msgid(domain=self.domain)
        m["X-Esam-Official-Id"] = msg.public_id
        m["Auto-Submitted"] = "auto-generated"
        lines = [
            ru("Evidence {event} for official message {id} ({time}).", event=last["event"], id=msg.public_id,
               time=last["time"]),
            en("Evidence {event} for official message {id} ({time}).", event=last["event"], id=msg.public_id,
               time=last["time"]),
            "",
            ru("The attached file is the signed evidence chain; check it with `esam evidence verify`."),
            en("The attached file is the signed evidence chain; check it with `esam evidence verify`."),
        ]
        m.set_content("\n".join(lines) + "\n")
        m.add_attachment(json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"), maintype="application",
                         subtype="json", filename=f"evidence-{msg.public_id}.json")
        try:
            await self.delivery.deliver_bounce(snd.notify_address, m.as_bytes())
        except (EsamError, OSError):
            log.warning("event=official.notify_failed id=%s", msg.public_id)

    # ------------------------------------------------------------------ retrieval

    def _kick(self) -> None:
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                self.notifier.publish(*OFFICIAL_KICK)

    def on_change(self, login: str, folder: str) -> None:
        """Store notifier callback (runs on the loop): a change in a watched INBOX, or a kick."""
        if (login, folder) == OFFICIAL_KICK:
            self._spawn(self.reload())
            return
        if folder != "INBOX" or login not in self._pending or login in self._checking:
            return
        task = asyncio.ensure_future(self._check_login(login))
        self._checking[login] = task
        task.add_done_callback(lambda _t: self._checking.pop(login, None))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> None:
        """Reload the watched set (delivered, not yet retrieved) from the directory."""
        pending: dict[str, dict[str, int]] = {}
        for mid, login, key in await self.tables.pending():
            pending.setdefault(login, {})[key] = mid
        self._pending = pending

    def _seen_keys(self, login: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` carry the S flag in the INBOX (runs in a thread)."""
        want = set(keys)
        seen: set[str] = set()
        cur = Path(self.store.user(login).path) / "cur"
        try:
            with os.scandir(cur) as it:
                for entry in it:
                    base, sep, flags = entry.name.partition(":2,")
                    if sep and base in want and "S" in flags:
                        seen.add(base)
        except FileNotFoundError:
            pass
        return seen

    async def _check_login(self, login: str) -> None:
        watched = dict(self._pending.get(login, {}))
        if not watched:
            return
        seen = await asyncio.to_thread(self._seen_keys, login, watched)
        for key in seen:
            await self.mark_retrieved(watched[key])
            self._pending.get(login, {}).pop(key, None)
        if login in self._pending and not self._pending[login]:
            del self._pending[login]

    async def _advance_later(self, message_row_id: int, ev: str, *, reason: str | None = None,
                             updates: dict[str, Any] | None = None) -> bool:
        msg = await self.tables.message(row_id=message_row_id)
        snd = await self.tables.sender(sender_id=msg.sender_id)
        assert snd is not None
        now = self.clock()
        done = await self.tables.advance(
            message_row_id, self._builder(snd, ev, now, reason=reason), at=now,
            purge_after=now + dt.timedelta(days=self.cfg.evidence_retention_days),
            from_states=("delivered",), to_state=ev.lower(), updates=updates)
        if done is None:
            return False
        event(log, f"official.{ev.lower()}", id=msg.public_id)
        await self._mail_sender(message_row_id)
        return True

    async def mark_retrieved(self, message_row_id: int) -> bool:
        """Record RETRIEVED once (the first process to get here wins)."""
        return await self._advance_later(message_row_id, "RETRIEVED", updates={"retrieved_at": self.clock()})

    async def sweep(self) -> dict[str, int]:
        """Retrievals a notification missed, EXPIRED deadlines, retention. Returns counts."""
        counts = {"retrieved": 0, "expired": 0, "purged_documents": 0, "purged_messages": 0}
        await self.reload()
        for login in list(self._pending)[:500]:  # bounded per sweep; the rest next time
            before = sum(len(v) for v in self._pending.values())
            await self._check_login(login)
            counts["retrieved"] += before - sum(len(v) for v in self._pending.values())
        now = self.clock()
        for mid in await self.tables.overdue(now):
            if await self._advance_later(mid, "EXPIRED", reason="not_retrieved_in_time"):
                counts["expired"] += 1
        if self._last_purge is None or (now - self._last_purge).total_seconds() >= 3600:
            self._last_purge = now
            cutoff = (now - dt.timedelta(days=self.cfg.document_retention_days)).timestamp()
            counts["purged_documents"] = await asyncio.to_thread(self._purge_copies, cutoff)
            counts["purged_messages"] = await self.tables.purge(now)
        return counts

    def _purge_copies(self, cutoff: float) -> int:
        """Delete the operator's document copies older than ``cutoff`` (a thread)."""
        n = 0
        try:
            with os.scandir(self.docs_dir) as it:
                for entry in it:
                    if entry.name.endswith(".eml") and entry.stat().st_mtime < cutoff:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            n += 1
        except FileNotFoundError:
            pass
        return n

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set: initial load, then a sweep every interval."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # a background loop must survive a bad sweep
                log.exception("event=official.sweep_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.sweep_interval)


def fingerprint_of_pem(pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate (``esam official sender add --cert``)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ValidationError("cert", M_("not a PEM certificate")) from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def decode_b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field, M_("not Base64")) from None
