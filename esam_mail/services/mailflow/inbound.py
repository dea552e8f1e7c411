"""Inbound policy on the MX: SPF, DKIM and DMARC, recorded and enforced (R9, R12).

Runs at end of DATA, before delivery.  Any ``Authentication-Results`` header
that claims our authserv-id is removed first (RFC 8601 section 5: a forged one
must not be trusted), then ours is prepended.  With ``dmarc_reject`` a
``p=reject`` failure is refused with 550 5.7.1 and nothing is delivered.
"""

from __future__ import annotations

import logging
import re

from esam_mail.errors import DeliveryError
from esam_mail.log import event
from esam_mail.services.mailflow.delivery import Transaction
from esam_mail.services.mailflow.inbound_auth import InboundAuthenticator

log = logging.getLogger(__name__)


def strip_our_results(data: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields (with continuations) naming ``authserv_id``."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return data
    rx = re.compile(rb"(?i)^authentication-results:\s*" + re.escape(authserv_id.encode()) + rb"\s*(;|$)")
    out: list[bytes] = []
    skipping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        skipping = bool(rx.match(line))
        if not skipping:
            out.append(line)
    return b"\r\n".join(out) + sep + body


class InboundPolicy:
    def __init__(self, auth: InboundAuthenticator, *, dmarc_reject: bool) -> None:
        self.auth = auth
        self.dmarc_reject = dmarc_reject

    async def __call__(self, tx: Transaction) -> None:
        tx.data = strip_our_results(tx.data, self.auth.authserv_id)
        results = await self.auth.evaluate(ip=tx.peer, helo=tx.helo, mail_from=tx.mail_from, message=tx.data)
        event(log, "inbound.auth", spf=results.spf.result, dmarc=results.dmarc.result,
              disposition=results.dmarc.disposition)
        if self.dmarc_reject and results.dmarc.disposition == "reject":
            raise DeliveryError(550, "5.7.1", "Rejected by the DMARC policy of the sender's domain")
        tx.extra_headers.append(results.header().encode("utf-8", "surrogateescape"))
