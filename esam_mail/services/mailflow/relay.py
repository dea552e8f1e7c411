"""Outbound SMTP delivery to the next hop (RFC 5321) with aiosmtplib as the client.

Routing (RFC 5321 5.1): a static transport map (exact recipient domain, then
``"*"`` as the smarthost) names a ``host[:port]``; otherwise the domain's MX
records are used in preference order (equal preferences shuffled), with the
implicit MX (the domain's own A/AAAA) when there are none.  A null MX
(RFC 7505) fails the recipients permanently with ``556 5.1.10``.

TLS (RFC 3207, RFC 7435 opportunistic security): STARTTLS is used whenever the
server offers it; certificates are not validated unless the domain's
``TlsPolicy`` says ``verify``.  If the handshake fails and TLS is not
``required``, delivery is retried in the clear on a new connection.

One SMTP transaction per destination domain carries all of its recipients;
each recipient gets its own outcome (RFC 5321 4.2.1 reply classes):
2xx delivered, 4xx retry later, 5xx permanent failure.  Connection-level
problems (refused, timeout, bad greeting) try the next host and finally
yield a 4xx for every recipient.  At most ``per_domain_limit`` connections to
one domain are open at a time.

Envelope addresses are validated here (no CR/LF/control characters,
GHSA-v3q9-hj7j-63hq) before they reach the wire.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from esam_mail.services.mailflow.inbound_auth import DnsTempError, Resolver

__all__ = [
    "NextHop",
    "RecipientResult",
    "Relay",
    "TlsPolicy",
    "validate_address",
]

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "failed"]

_CTRL_RE = re.compile(r"[\x00-\x20\x7f<>]")
_ENH_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
MAX_PATH = 256  # RFC 5321 4.5.3.1.3, including the angle brackets
MAX_HOPS = 6  # addresses tried per delivery attempt


def validate_address(address: str, *, allow_null: bool = False) -> str:
    """Check an envelope address before it is put on an SMTP command line.

    Args:
        address: ``local@domain`` without angle brackets.
        allow_null: accept ``""`` (the null reverse-path, RFC 5321 4.5.5).

    Returns:
        The address unchanged.

    Raises:
        ValueError: control characters, CR/LF, spaces, brackets, missing
            ``@``/local part/domain, or longer than RFC 5321 allows.
    """
    if address == "" and allow_null:
        return address
    if _CTRL_RE.search(address):
        raise ValueError("address contains control characters, spaces or brackets")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) + 2 > MAX_PATH:
        raise ValueError("malformed address")
    return address


def domain_of(address: str) -> str:
    """Lower-cased domain part of an address."""
    return address.rpartition("@")[2].lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """TLS requirements for one destination.

    ``verify``: validate the certificate against the MX host name.
    ``required``: never send in the clear (4xx if TLS is unavailable).
    """

    verify: bool = False
    required: bool = False


@dataclass(frozen=True, slots=True)
class NextHop:
    """One address to try: ``name`` is the MX/smarthost name (Remote-MTA in DSNs
    and the TLS server name), ``address`` what we connect to."""

    name: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What happened to one recipient in one attempt.

    ``message`` is the reply text (without the code, may start with the
    enhanced status); ``remote_mta`` the host that replied, ``None`` when we
    never reached one.
    """

    rcpt: str
    code: int
    message: str
    remote_mta: str | None = None

    @property
    def outcome(self) -> Outcome:
        if 200 <= self.code < 300:
            return "delivered"
        if 400 <= self.code < 500:
            return "retry"
        return "failed"

    @property
    def enhanced(self) -> str:
        """RFC 3463 status: from the reply when present and consistent,
        else ``<class>.0.0``."""
        m = _ENH_RE.match(self.message)
        cls = str(self.code)[0]
        if m and m.group(1) == cls:
            return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        return f"{cls}.0.0"

    @property
    def reply(self) -> str:
        """The reply on one line, e.g. ``"550 5.1.1 no such user"``."""
        text = " ".join(self.message.split())
        return f"{self.code} {text}".strip()


class _HopError(Exception):
    """Routing or connection failure that applies to every recipient."""

    def __init__(self, code: int, text: str, remote_mta: str | None = None) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.remote_mta = remote_mta


class _TlsFailed(Exception):
    pass


def _parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
        return host, port
    if value.count(":") == 1:
        host, _, p = value.partition(":")
        return host, int(p)
    return value, default_port


class Relay:
    """Deliver messages to remote SMTP servers.

    Args:
        local_hostname: our EHLO name.
        resolver: DNS for MX/A/AAAA (see ``inbound_auth.Resolver``); required
            unless every domain is covered by ``transport_map``.
        transport_map: recipient domain (or ``"*"``) -> ``"host[:port]"``
            (``"[v6addr]:port"`` for IPv6); bypasses MX lookup.
        tls_policies: recipient domain (or ``"*"``) -> ``TlsPolicy``.
        per_domain_limit: concurrent connections per recipient domain.
        timeout: seconds per SMTP command/connect.
        port: destination port for MX hosts (25).
        tls_context: optional client context for STARTTLS (built by ``tls.py``).
    """

    def __init__(
        self,
        *,
        local_hostname: str,
        resolver: Resolver | None = None,
        transport_map: Mapping[str, str] | None = None,
        tls_policies: Mapping[str, TlsPolicy] | None = None,
        per_domain_limit: int = 3,
        timeout: float = 60.0,
        port: int = 25,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.local_hostname = local_hostname
        self.resolver = resolver
        self.transport_map = {k.lower().rstrip("."): v for k, v in (transport_map or {}).items()}
        self.tls_policies = {k.lower().rstrip("."): v for k, v in (tls_policies or {}).items()}
        self.per_domain_limit = per_domain_limit
        self.timeout = timeout
        self.port = port
        self.tls_context = tls_context
        self._limits: dict[str, asyncio.Semaphore] = {}

    def set_transport_map(self, transport_map: Mapping[str, str]) -> None:
        """Route by a new transport map from the next delivery on (SIGHUP)."""
        self.transport_map = {k.lower().rstrip("."): v for k, v in transport_map.items()}

    # -- routing -------------------------------------------------------------

    def policy_for(self, domain: str) -> TlsPolicy:
        return self.tls_policies.get(domain) or self.tls_policies.get("*") or TlsPolicy()

    async def _addresses(self, name: str) -> list[str]:
        try:
            ipaddress.ip_address(name)
            return [name]
        except ValueError:
            pass
        assert self.resolver is not None
        return [*await self.resolver.a(name), *await self.resolver.aaaa(name)]

    async def resolve(self, domain: str) -> list[NextHop]:
        """Next hops for ``domain`` in the order to try them.

        Raises:
            _HopError: with a 4xx (DNS trouble) or 5xx (null MX, no such domain).
        """
        route = self.transport_map.get(domain) or self.transport_map.get("*")
        if route:
            host, port = _parse_hostport(route, self.port)
            return [NextHop(host, host, port)]
        if self.resolver is None:
            raise _HopError(451, "4.3.5 no resolver and no transport for domain")
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise _HopError(553, "5.1.2 bad destination domain") from None
        try:
            mxs = await self.resolver.mx(ascii_domain)
        except DnsTempError:
            raise _HopError(451, "4.4.3 temporary DNS failure (MX)") from None
        if any(host in ("", ".") for _, host in mxs):
            raise _HopError(556, "5.1.10 domain does not accept mail (null MX)")
        if not mxs:
            mxs = [(0, ascii_domain)]  # implicit MX, RFC 5321 5.1
            implicit = True
        else:
            implicit = False
        by_pref: dict[int, list[str]] = {}
        for pref, host in mxs:
            by_pref.setdefault(pref, []).append(host)
        hops: list[NextHop] = []
        temp = False
        for pref in sorted(by_pref):
            hosts = by_pref[pref]
            random.shuffle(hosts)
            for host in hosts:
                try:
                    addrs = await self._addresses(host)
                except DnsTempError:
                    temp = True
                    continue
                hops.extend(NextHop(host, a, self.port) for a in addrs)
        if not hops:
            if temp:
                raise _HopError(451, "4.4.3 temporary DNS failure (address)")
            if implicit:
                raise _HopError(550, "5.1.2 domain has no MX or address records")
            raise _HopError(451, "4.4.4 MX hosts have no address")
        return hops[:MAX_HOPS]

    # -- delivery ------------------------------------------------------------

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> list[RecipientResult]:
        """Deliver to every recipient, one transaction per domain, concurrently.

        Args:
            mail_from: reverse-path without brackets, ``""`` for null.
            rcpts: forward-paths.
            data: message bytes (CRLF).

        Returns:
            One ``RecipientResult`` per recipient, in the order given.  Never
            raises for delivery problems.
        """
        results: dict[str, RecipientResult] = {}
        try:
            validate_address(mail_from, allow_null=True)
        except ValueError:
            return [RecipientResult(r, 553, "5.1.7 invalid sender address") for r in rcpts]
        groups: dict[str, list[str]] = {}
        for r in rcpts:
            try:
                validate_address(r)
            except ValueError:
                results[r] = RecipientResult(r, 553, "5.1.3 invalid recipient address")
                continue
            groups.setdefault(domain_of(r), []).append(r)
        done = await asyncio.gather(
            *(self.deliver_domain(d, mail_from, rs, data) for d, rs in groups.items())
        )
        for group in done:
            for res in group:
                results[res.rcpt] = res
        return [results[r] for r in rcpts]

    async def deliver_domain(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes
    ) -> list[RecipientResult]:
        """One attempt for recipients that all share ``domain``."""
        sem = self._limits.setdefault(domain, asyncio.Semaphore(self.per_domain_limit))
        async with sem:
            try:
                hops = await self.resolve(domain)
                return await self._try_hops(domain, hops, mail_from, rcpts, data)
            except _HopError as e:
                log.info("relay domain=%s code=%d %s", domain, e.code, e.text)
                return [RecipientResult(r, e.code, e.text, e.remote_mta) for r in rcpts]

    async def _try_hops(
        self,
        domain: str,
        hops: list[NextHop],
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
    ) -> list[RecipientResult]:
        policy = self.policy_for(domain)
        last = _HopError(451, "4.4.1 no answer from host")
        for hop in hops:
            try:
                try:
                    return await self._session(hop, policy, mail_from, rcpts, data, tls=True)
                except _TlsFailed:
                    if policy.required:
                        raise _HopError(451, "4.7.5 TLS handshake failed", hop.name) from None
                    # RFC 7435 opportunistic: fall back to cleartext.
                    log.info("relay host=%s tls failed, retrying in clear", hop.name)
                    return await self._session(hop, policy, mail_from, rcpts, data, tls=False)
            except _HopError as e:
                log.info("relay host=%s addr=%s failed: %s", hop.name, hop.address, e)
                last = e
        raise last

    async def _session(
        self,
        hop: NextHop,
        policy: TlsPolicy,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
        *,
        tls: bool,
    ) -> list[RecipientResult]:
        smtp = aiosmtplib.SMTP(
            hostname=hop.address,
            port=hop.port,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
            start_tls=False,
            validate_certs=policy.verify,
        )
        sent_data = False
        try:
            try:
                await smtp.connect()
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                try:
                    await smtp.helo()
                except aiosmtplib.SMTPException as e:
                    raise _HopError(451, f"4.4.2 HELO failed: {e}", hop.name) from None
            except aiosmtplib.SMTPResponseException as e:  # greeting 4xx/5xx
                raise _HopError(451, f"4.4.1 greeting {e.code}", hop.name) from None
            except (aiosmtplib.SMTPException, OSError) as e:
                raise _HopError(451, f"4.4.1 connection failed ({type(e).__name__})") from None

            if smtp.supports_extension("starttls") and tls:
                try:
                    if self.tls_context is not None:
                        await smtp.starttls(server_hostname=hop.name, tls_context=self.tls_context)
                    else:
                        await smtp.starttls(server_hostname=hop.name, validate_certs=policy.verify)
                    await smtp.ehlo()
                except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as e:
                    log.info("relay host=%s starttls: %s", hop.name, e)
                    raise _TlsFailed from None
            elif policy.required:
                raise _HopError(451, "4.7.4 TLS required but not offered", hop.name)

            options = []
            if smtp.supports_extension("size"):
                options.append(f"SIZE={len(data)}")
            if any(b > 127 for b in data) and smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            if not (mail_from + "".join(rcpts)).isascii():
                if not smtp.supports_extension("smtputf8"):
                    return [
                        RecipientResult(r, 553, "5.6.7 SMTPUTF8 not supported by peer", hop.name)
                        for r in rcpts
                    ]
                options.append("SMTPUTF8")
            enc = "utf-8" if "SMTPUTF8" in options else "ascii"
            try:
                await smtp.mail(mail_from, options=options, encoding=enc)
            except aiosmtplib.SMTPSenderRefused as e:
                return [RecipientResult(r, e.code, e.message, hop.name) for r in rcpts]
            out: dict[str, RecipientResult] = {}
            accepted: list[str] = []
            for r in rcpts:
                try:
                    await smtp.rcpt(r, encoding=enc)
                    accepted.append(r)
                except aiosmtplib.SMTPRecipientRefused as e:
                    out[r] = RecipientResult(r, e.code, e.message, hop.name)
            if accepted:
                body = data if data.endswith(b"\r\n") else data + b"\r\n"
                sent_data = True
                try:
                    resp = await smtp.data(body)
                    for r in accepted:
                        out[r] = RecipientResult(r, resp.code, resp.message, hop.name)
                except aiosmtplib.SMTPDataError as e:
                    for r in accepted:
                        out[r] = RecipientResult(r, e.code, e.message, hop.name)
            else:
                try:
                    await smtp.rset()
                except aiosmtplib.SMTPException:
                    pass
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            return [out[r] for r in rcpts]
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            # Lost mid-transaction: retry later. After DATA this may duplicate,
            # which RFC 5321 6.1 prefers to losing the message.
            note = "after DATA" if sent_data else "during transaction"
            raise _HopError(451, f"4.4.2 connection lost {note} ({type(e).__name__})", hop.name) from None
        finally:
            smtp.close()
