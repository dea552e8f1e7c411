"""Re-checking EDS confirmations: expiry and revocation (CRL or OCSP, per ``[eds]``).

A mailbox stays enabled for official documents only while the certificate that confirmed
it is valid.  Every ``eds.recheck_interval`` seconds :meth:`EdsRecheck.run_once` looks at the
latest, not yet lapsed confirmation of every EDS-confirmed mailbox:

* ``not_after`` has passed: the confirmation lapses with reason ``expired``;
* ``eds.revocation = "crl"``: the CRLs of ``eds.crl_files`` and ``eds.crl_urls`` (fetched
  over HTTP once per run) whose issuer is the certificate's issuer and whose signature
  verifies with the issuer's key: a listed serial lapses it (``revoked``);
* ``eds.revocation = "ocsp"``: one RFC 6960 request per certificate to ``eds.ocsp_url`` (or
  the certificate's AIA responder); a *signed* ``revoked`` answer lapses it.  ``unknown``, a
  network error or an unsigned/forged answer changes nothing and is logged: a responder
  that is down must not switch the official channel off for everyone.

A lapse clears ``mailboxes.eds_confirmed`` (the official channel stops delivering at once:
:meth:`OfficialTables.resolve` also refuses lapsed confirmations) and the holder gets a
notice in their INBOX, in Kazakh and Russian, saying why and how to confirm again.

Network I/O (urllib) and CRL/OCSP parsing run in worker threads; nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from esam_mail.directory.official import EdsTables, LiveConfirmation
from esam_mail.directory.sql import SqlDirectory
from esam_mail.i18n import Translator
from esam_mail.log import event

__all__ = ["EdsRecheck", "lapse_notice"]

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], Awaitable[None]]


def _fetch(url: str, timeout: float, body: bytes | None = None, ctype: str | None = None) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise ValueError("only http(s) URLs")
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype} if ctype else {})  # noqa: S310 - scheme checked above
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
        data: bytes = resp.read(10 * 1024 * 1024 + 1)
    if len(data) > 10 * 1024 * 1024:
        raise ValueError("answer larger than 10 MiB")
    return data


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def lapse_notice(address: str, reason: str, domain: str, now: dt.datetime) -> bytes:
    """The INBOX notice telling a holder that their mailbox left the official channel."""
    kk, ru, en = (Translator("official", lang) for lang in ("kk", "ru", "en"))
    why = {
        "expired": [t("The certificate of your electronic signature has expired.") for t in (kk, ru, en)],
        "revoked": [t("The certificate of your electronic signature has been revoked.") for t in (kk, ru, en)],
    }.get(reason, ["", "", ""])
    parts = []
    for t, w in zip((kk, ru, en), why, strict=True):
        parts.append(w)
        parts.append(t("Your mailbox {address} no longer receives official electronic documents.",
                       address=address))
        parts.append(t("Confirm the mailbox again with a valid electronic signature to receive them."))
        parts.append("")
    m = EmailMessage()
    m["From"] = f"official@{domain}"
    m["To"] = address
    m["Subject"] = " / ".join(t("EDS confirmation of your mailbox has lapsed") for t in (kk, ru))
    m["Date"] = format_datetime(now)
    m["Message-ID"] = make_msgid(domain=domain)
    m["Auto-Submitted"] = "auto-generated"
    m.set_content("\n".join(parts))
    return m.as_bytes()


class EdsRecheck:
    """Lapses confirmations whose certificate expired or was revoked.

    Args:
        directory: the directory.
        deliver: ``deliver(address, message)`` puts the notice into the holder's INBOX
            (``DeliveryService.deliver_bounce``).
        revocation: ``off``, ``crl`` or ``ocsp``.
        crl_files, crl_urls, ocsp_url, timeout: as in ``[eds]``.
        clock: aware-UTC now.
    """

    def __init__(
        self,
        directory: SqlDirectory,
        deliver: Deliver,
        *,
        revocation: str = "off",
        crl_files: Sequence[str] = (),
        crl_urls: Sequence[str] = (),
        ocsp_url: str = "",
        timeout: float = 10.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.tables = EdsTables(directory)
        self.domain = directory.domain
        self.deliver = deliver
        self.revocation = revocation
        self.crl_files = list(crl_files)
        self.crl_urls = list(crl_urls)
        self.ocsp_url = ocsp_url
        self.timeout = timeout
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    async def run_once(self) -> dict[str, int]:
        """One pass over the live confirmations; returns counts by outcome."""
        now = self.clock()
        counts = {"checked": 0, "expired": 0, "revoked": 0, "unavailable": 0}
        live = await self.tables.live()
        crls = await asyncio.to_thread(self._crls) if self.revocation == "crl" and live else []
        still: list[int] = []
        for c in live:
            counts["checked"] += 1
            reason: str | None = None
            if c.not_after <= now:
                reason = "expired"
            elif self.revocation in ("crl", "ocsp") and c.certificate:
                try:
                    if self.revocation == "crl":
                        revoked = await asyncio.to_thread(self._crl_revoked, c, crls)
                    else:
                        revoked = await asyncio.to_thread(self._ocsp_revoked, c)
                except (OSError, ValueError) as exc:
                    counts["unavailable"] += 1
                    event(log, "eds.recheck_unavailable", logging.WARNING, mailbox_id=c.mailbox_id,
                          error=type(exc).__name__)
                    continue
                reason = "revoked" if revoked else None
            if reason is None:
                still.append(c.id)
                continue
            if await self.tables.lapse(c.id, reason, now):
                counts[reason] += 1
                event(log, "eds.lapsed", mailbox_id=c.mailbox_id, reason=reason)
                await self.deliver(c.address, lapse_notice(c.address, reason, self.domain, now))
        await self.tables.checked(still, now)
        return counts

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # a background loop must survive one bad pass
                log.exception("event=eds.recheck_failed")
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    # -- CRL -------------------------------------------------------------------------
    def _crls(self) -> list[x509.CertificateRevocationList]:
        out = []
        for path in self.crl_files:
            try:
                out.append(_load_crl(Path(path).read_bytes()))
            except (OSError, ValueError):
                log.warning("event=eds.crl_unreadable path=%s", path)
        for url in self.crl_urls:
            try:
                out.append(_load_crl(_fetch(url, self.timeout)))
            except (OSError, ValueError):
                log.warning("event=eds.crl_unavailable url=%s", url)
        return out

    @staticmethod
    def _crl_revoked(c: LiveConfirmation, crls: list[x509.CertificateRevocationList]) -> bool:
        assert c.certificate is not None
        cert = x509.load_der_x509_certificate(c.certificate)
        issuer = x509.load_der_x509_certificate(c.issuer_certificate) if c.issuer_certificate else None
        usable = False
        for crl in crls:
            if crl.issuer != cert.issuer:
                continue
            if issuer is not None:
                try:
                    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                        continue
                except (TypeError, ValueError):
                    continue
            usable = True
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return True
        if not usable:
            raise ValueError("no CRL of the certificate's issuer")
        return False

    # -- OCSP ------------------------------------------------------------------------
    def _ocsp_revoked(self, c: LiveConfirmation) -> bool:
        if not c.certificate or not c.issuer_certificate:
            raise ValueError("the issuer certificate was not kept: cannot ask OCSP")
        cert = x509.load_der_x509_certificate(c.certificate)
        issuer = x509.load_der_x509_certificate(c.issuer_certificate)
        url = self.ocsp_url or _aia_ocsp(cert)
        if not url:
            raise ValueError("no OCSP responder configured or in the certificate")
        req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303 - RFC 6960 CertID
        der = _fetch(url, self.timeout, req.public_bytes(serialization.Encoding.DER), "application/ocsp-request")
        resp = ocsp.load_der_ocsp_response(der)
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise ValueError(f"OCSP status {resp.response_status.name}")
        if resp.serial_number != cert.serial_number:
            raise ValueError("OCSP answer is about another certificate")
        _check_ocsp_signature(resp, issuer)
        if resp.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            return True
        if resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN:
            raise ValueError("OCSP: unknown certificate")
        return False


def _aia_ocsp(cert: x509.Certificate) -> str:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ""
    for desc in aia:
        if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            desc.access_location, x509.UniformResourceIdentifier
        ):
            return desc.access_location.value
    return ""


def _check_ocsp_signature(resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    """The answer is signed by the issuer itself, or by a responder certificate the issuer
    signed for OCSP signing (RFC 6960 4.2.2.2).

    Raises:
        ValueError: anything else (a forged answer changes nothing).
    """
    signer = issuer
    for c in resp.certificates:
        if c.subject == issuer.subject:
            continue
        try:
            c.verify_directly_issued_by(issuer)
            eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            signer = c
            break
    key = signer.public_key()
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

        algo = resp.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(algo))
        else:
            raise ValueError("unsupported OCSP signature")
    except InvalidSignature:
        raise ValueError("the OCSP answer's signature does not verify") from None
