"""Sender authentication of inbound mail: SPF, DKIM, DMARC and the
``Authentication-Results`` header that records them.

* SPF: RFC 7208 ``check_host()`` (section 4) with the mechanisms ``all``,
  ``include``, ``a``, ``mx``, ``ptr`` (never matches: RFC 7208 5.5 says it
  SHOULD NOT be used and our resolver has no PTR), ``ip4``, ``ip6``, ``exists``,
  the ``redirect`` modifier, macros (section 7), the limit of 10 DNS-querying
  terms (4.6.4) and of 2 void lookups (4.6.4).  ``exp=`` is ignored.
* DKIM: RFC 6376 verification of every signature via dkimpy, with the key
  fetched through our ``Resolver`` and the CPU work in a thread.
* DMARC: RFC 7489 policy discovery (6.6.3: From domain, then organisational
  domain), identifier alignment (3.1, relaxed/strict for SPF and DKIM),
  ``p=``/``sp=`` disposition.  ``pct=`` is parsed but not applied (the
  disposition reported is always the full policy); no reports are sent.
* ``Authentication-Results`` per RFC 8601.

All DNS goes through one async ``Resolver`` protocol (``txt``, ``a``, ``aaaa``,
``mx``).  ``DnsPythonResolver`` is the real one (dnspython ``dns.asyncresolver``);
``StaticResolver`` is a dict-backed one for tests and static setups.  It is
shared with ``services.mailflow.relay`` for MX lookups.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Literal, Protocol

import dkim
import dkim.util

__all__ = [
    "AuthResults",
    "DkimResult",
    "DmarcResult",
    "DnsPythonResolver",
    "DnsTempError",
    "InboundAuthenticator",
    "Resolver",
    "SpfResult",
    "StaticResolver",
    "check_spf",
    "organizational_domain",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# DNS
# ---------------------------------------------------------------------------


class DnsTempError(Exception):
    """A DNS lookup failed temporarily (SERVFAIL, timeout): callers map it to
    ``temperror`` (SPF/DKIM/DMARC) or a 4xx (relay)."""


class Resolver(Protocol):
    """Async DNS lookups used by inbound authentication and outbound relay.

    Every method returns an empty list for NXDOMAIN and for "no records of
    this type" and raises ``DnsTempError`` when the answer is unknown.  Names
    are given without a trailing dot.
    """

    async def txt(self, name: str) -> list[str]:
        """TXT records, each one's character-strings concatenated (RFC 7208 3.3)."""
        ...

    async def a(self, name: str) -> list[str]:
        """IPv4 addresses as text."""
        ...

    async def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses as text."""
        ...

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """``(preference, exchange)``; exchange without trailing dot, ``""`` for
        the root (a null MX, RFC 7505)."""
        ...


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


class DnsPythonResolver:
    """``Resolver`` backed by dnspython's ``dns.asyncresolver``.

    Args:
        resolver: a configured ``dns.asyncresolver.Resolver`` (default: system).
        lifetime: total seconds per query.
    """

    def __init__(self, resolver: object | None = None, lifetime: float = 10.0) -> None:
        import dns.asyncresolver

        self._resolver = resolver or dns.asyncresolver.Resolver()
        self.lifetime = lifetime

    async def _query(self, name: str, rdtype: str) -> list[object]:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(  # type: ignore[attr-defined]
                name, rdtype, lifetime=self.lifetime, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
            raise DnsTempError(f"{rdtype} {name}: {type(e).__name__}") from e
        except dns.exception.DNSException as e:  # bad names etc. are permanent
            log.debug("dns %s %s failed: %s", rdtype, name, e)
            return []
        return list(answer)

    async def txt(self, name: str) -> list[str]:
        rrs = await self._query(name, "TXT")
        return [b"".join(r.strings).decode("utf-8", "replace") for r in rrs]  # type: ignore[attr-defined]

    async def a(self, name: str) -> list[str]:
        return [r.address for r in await self._query(name, "A")]  # type: ignore[attr-defined]

    async def aaaa(self, name: str) -> list[str]:
        return [r.address for r in await self._query(name, "AAAA")]  # type: ignore[attr-defined]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        rrs = await self._query(name, "MX")
        return [
            (int(r.preference), _norm(r.exchange.to_text()))  # type: ignore[attr-defined]
            for r in rrs
        ]


class StaticResolver:
    """Dict-backed ``Resolver`` for tests and fixed setups.

    Args:
        txt, a, aaaa: name -> list of values.
        mx: name -> list of ``(preference, host)``; host ``"."`` is a null MX.
        fail: names whose every lookup raises ``DnsTempError``.

    ``queries`` records every ``(type, name)`` asked, in order.
    """

    def __init__(
        self,
        *,
        txt: Mapping[str, list[str]] | None = None,
        a: Mapping[str, list[str]] | None = None,
        aaaa: Mapping[str, list[str]] | None = None,
        mx: Mapping[str, list[tuple[int, str]]] | None = None,
        fail: Iterable[str] = (),
    ) -> None:
        self._txt = {_norm(k): list(v) for k, v in (txt or {}).items()}
        self._a = {_norm(k): list(v) for k, v in (a or {}).items()}
        self._aaaa = {_norm(k): list(v) for k, v in (aaaa or {}).items()}
        self._mx = {_norm(k): [(p, _norm(h)) for p, h in v] for k, v in (mx or {}).items()}
        self.fail = {_norm(n) for n in fail}
        self.queries: list[tuple[str, str]] = []

    def _get(self, kind: str, table: Mapping[str, list[object]], name: str) -> list[object]:
        name = _norm(name)
        self.queries.append((kind, name))
        if name in self.fail:
            raise DnsTempError(f"{kind} {name}: configured failure")
        return list(table.get(name, []))

    async def txt(self, name: str) -> list[str]:
        return self._get("txt", self._txt, name)  # type: ignore[arg-type,return-value]

    async def a(self, name: str) -> list[str]:
        return self._get("a", self._a, name)  # type: ignore[arg-type,return-value]

    async def aaaa(self, name: str) -> list[str]:
        return self._get("aaaa", self._aaaa, name)  # type: ignore[arg-type,return-value]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        return self._get("mx", self._mx, name)  # type: ignore[arg-type,return-value]


# ---------------------------------------------------------------------------
# SPF (RFC 7208)
# ---------------------------------------------------------------------------

SpfResultCode = Literal["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]
_QUALIFIERS: dict[str, SpfResultCode] = {
    "+": "pass",
    "-": "fail",
    "~": "softfail",
    "?": "neutral",
}
MAX_DNS_TERMS = 10  # RFC 7208 4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4
MAX_MX_NAMES = 10  # RFC 7208 4.6.4


@dataclass(slots=True)
class SpfResult:
    """Outcome of ``check_host`` for one identity (RFC 7208 2.6)."""

    result: SpfResultCode
    domain: str  # domain checked (MAIL FROM domain, or HELO for a null sender)
    identity: str  # the address/name shown as smtp.mailfrom / smtp.helo
    scope: Literal["mailfrom", "helo"] = "mailfrom"
    reason: str = ""


class _SpfError(Exception):
    def __init__(self, result: SpfResultCode, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass(slots=True)
class _SpfState:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    resolver: Resolver
    lookups: int = 0
    voids: int = 0

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_TERMS:
            raise _SpfError("permerror", "too many DNS lookups")

    def void(self) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise _SpfError("permerror", "too many void lookups")


_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$", re.I)
_MACRO_RE = re.compile(r"%(?:\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|(.))", re.I)


def _valid_domain(d: str) -> bool:
    d = d.rstrip(".")
    if not d or len(d) > 253 or "." not in d:
        return False
    return all(_LABEL_RE.match(lbl) for lbl in d.split("."))


def _expand(spec: str, st: _SpfState, domain: str) -> str:
    """Macro expansion, RFC 7208 7.3 (``exp``-only letters are not supported)."""
    local, _, sender_dom = st.sender.rpartition("@")

    def letter_value(ch: str) -> str:
        c = ch.lower()
        if c == "s":
            return st.sender
        if c == "l":
            return local or "postmaster"
        if c == "o":
            return sender_dom
        if c == "d":
            return domain
        if c == "i":
            if st.ip.version == 4:
                return str(st.ip)
            return ".".join(st.ip.exploded.replace(":", ""))
        if c == "p":
            return "unknown"
        if c == "v":
            return "in-addr" if st.ip.version == 4 else "ip6"
        if c == "h":
            return st.helo
        raise _SpfError("permerror", f"macro %{{{ch}}} not allowed here")

    def repl(m: re.Match[str]) -> str:
        if m.group(5) is not None:
            lit = {"%": "%", "_": " ", "-": "%20"}.get(m.group(5))
            if lit is None:
                raise _SpfError("permerror", "bad macro")
            return lit
        ch, digits, rev, delims = m.group(1), m.group(2), m.group(3), m.group(4)
        parts = re.split("[" + re.escape(delims or ".") + "]", letter_value(ch))
        if rev:
            parts.reverse()
        if digits:
            n = int(digits)
            if n == 0:
                raise _SpfError("permerror", "macro with 0 parts")
            parts = parts[-n:]
        out = ".".join(parts)
        if ch.isupper():
            out = urllib.parse.quote(out, safe="")
        return out

    if "%" in spec and re.search(r"%(?![{%_-])", spec):
        raise _SpfError("permerror", "bad macro")
    expanded = _MACRO_RE.sub(repl, spec)
    # RFC 7208 7.3: shorten from the left until it fits.
    while len(expanded) > 253 and "." in expanded:
        expanded = expanded.split(".", 1)[1]
    return expanded.rstrip(".")


_MECH_RE = re.compile(
    r"^([+\-~?]?)(all|include|a|mx|ptr|ip4|ip6|exists)(?::([^/]+))?"
    r"(?:/(\d+))?(?://(\d+))?$",
    re.I,
)
_MOD_RE = re.compile(r"^([a-z][a-z0-9_.\-]*)=(.*)$", re.I)


def _cidr_match(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    addrs: Iterable[str],
    c4: int,
    c6: int,
) -> bool:
    for a in addrs:
        try:
            net = ipaddress.ip_network(f"{a}/{c4 if ':' not in a else c6}", strict=False)
        except ValueError:
            continue
        if net.version == ip.version and ip in net:
            return True
    return False


async def _addresses(st: _SpfState, name: str) -> list[str]:
    try:
        return await (st.resolver.a(name) if st.ip.version == 4 else st.resolver.aaaa(name))
    except DnsTempError as e:
        raise _SpfError("temperror", str(e)) from e


async def _check_host(st: _SpfState, domain: str, depth: int = 0) -> SpfResultCode:
    """RFC 7208 4: evaluate the SPF record of ``domain`` for ``st.ip``."""
    if not _valid_domain(domain):
        return "none"
    if depth > MAX_DNS_TERMS:
        raise _SpfError("permerror", "include/redirect loop")
    try:
        txts = await st.resolver.txt(domain)
    except DnsTempError as e:
        raise _SpfError("temperror", str(e)) from e
    records = [t for t in txts if re.match(r"^v=spf1(\s|$)", t, re.I)]
    if not records:
        return "none"
    if len(records) > 1:
        raise _SpfError("permerror", f"multiple SPF records at {domain}")
    terms = records[0].split()[1:]

    redirect: str | None = None
    seen_mods: set[str] = set()
    directives: list[re.Match[str]] = []
    for term in terms:
        m = _MECH_RE.match(term)
        if m:
            directives.append(m)
            continue
        mm = _MOD_RE.match(term)
        if not mm:
            raise _SpfError("permerror", f"bad term {term!r}")
        name = mm.group(1).lower()
        if name in ("redirect", "exp"):
            if name in seen_mods:
                raise _SpfError("permerror", f"duplicate {name}")
            seen_mods.add(name)
            if name == "redirect":
                redirect = mm.group(2)

    for m in directives:
        qualifier = _QUALIFIERS[m.group(1) or "+"]
        mech = m.group(2).lower()
        arg = m.group(3)
        c4 = int(m.group(4)) if m.group(4) else 32
        c6 = int(m.group(5)) if m.group(5) else 128
        if mech in ("ip4", "ip6", "all") and m.group(5):
            raise _SpfError("permerror", f"bad cidr in {m.group(0)}")
        matched = False
        if mech == "all":
            if arg or m.group(4):
                raise _SpfError("permerror", "bad all")
            matched = True
        elif mech in ("ip4", "ip6"):
            if not arg:
                raise _SpfError("permerror", f"{mech} needs an address")
            try:
                addr = ipaddress.ip_address(arg)
            except ValueError as e:
                raise _SpfError("permerror", f"bad address {arg!r}") from e
            if (mech == "ip4") != (addr.version == 4):
                raise _SpfError("permerror", f"bad address {arg!r}")
            if mech == "ip6" and m.group(4):
                c6 = int(m.group(4))
                c4 = 32
            if (c4 > 32) or (c6 > 128):
                raise _SpfError("permerror", "bad cidr")
            matched = _cidr_match(st.ip, [arg], c4, c6)
        else:
            if (c4 > 32) or (c6 > 128):
                raise _SpfError("permerror", "bad cidr")
            target = _expand(arg, st, domain) if arg else domain
            st.count()
            if mech == "include":
                if not arg:
                    raise _SpfError("permerror", "include needs a domain")
                sub = await _check_host(st, target, depth + 1)
                if sub == "pass":
                    matched = True
                elif sub in ("permerror", "none"):
                    raise _SpfError("permerror", f"include {target}: {sub}")
                elif sub == "temperror":
                    raise _SpfError("temperror", f"include {target}")
            elif mech == "a":
                addrs = await _addresses(st, target)
                if not addrs:
                    st.void()
                matched = _cidr_match(st.ip, addrs, c4, c6)
            elif mech == "mx":
                try:
                    mxs = await st.resolver.mx(target)
                except DnsTempError as e:
                    raise _SpfError("temperror", str(e)) from e
                if not mxs:
                    st.void()
                if len(mxs) > MAX_MX_NAMES:
                    raise _SpfError("permerror", "too many MX names")
                for _pref, host in mxs:
                    if host and _cidr_match(st.ip, await _addresses(st, host), c4, c6):
                        matched = True
                        break
            elif mech == "exists":
                if not arg:
                    raise _SpfError("permerror", "exists needs a domain")
                try:
                    found = await st.resolver.a(target)
                except DnsTempError as e:
                    raise _SpfError("temperror", str(e)) from e
                if not found:
                    st.void()
                matched = bool(found)
            elif mech == "ptr":
                matched = False  # RFC 7208 5.5: SHOULD NOT be used; not supported
        if matched:
            return qualifier

    # RFC 7208 6.1: redirect only applies when no "all" mechanism is present.
    if redirect is not None and not any(m.group(2).lower() == "all" for m in directives):
        st.count()
        target = _expand(redirect, st, domain)
        sub = await _check_host(st, target, depth + 1)
        if sub == "none":
            raise _SpfError("permerror", f"redirect {target}: no record")
        return sub
    return "neutral"


async def check_spf(resolver: Resolver, ip: str, mail_from: str, helo: str) -> SpfResult:
    """Check the MAIL FROM identity (RFC 7208 2.4), or the HELO identity when
    the reverse-path is null (RFC 7208 2.4: ``postmaster@<helo>``).

    Args:
        resolver: DNS.
        ip: the connecting client's address.
        mail_from: the reverse-path without brackets (``""`` for null).
        helo: the EHLO/HELO argument.
    """
    helo = _norm(helo)
    if mail_from:
        sender = mail_from
        domain = _norm(mail_from.rpartition("@")[2])
        scope: Literal["mailfrom", "helo"] = "mailfrom"
        identity = mail_from
        if "@" not in mail_from:
            sender = "postmaster@" + domain
    else:
        sender = "postmaster@" + helo
        domain = helo
        scope = "helo"
        identity = helo
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return SpfResult("permerror", domain, identity, scope, "bad client address")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    st = _SpfState(ip=addr, sender=sender, helo=helo, resolver=resolver)
    try:
        result = await _check_host(st, domain)
    except _SpfError as e:
        return SpfResult(e.result, domain, identity, scope, e.reason)
    return SpfResult(result, domain, identity, scope)


# ---------------------------------------------------------------------------
# DKIM (RFC 6376)
# ---------------------------------------------------------------------------

DkimResultCode = Literal["none", "pass", "fail", "neutral", "temperror", "permerror"]


@dataclass(slots=True)
class DkimResult:
    """Outcome for one ``DKIM-Signature`` (RFC 8601 2.7.1)."""

    result: DkimResultCode
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    b: str = ""  # first characters of b= (RFC 6008) to tell signatures apart
    reason: str = ""


def _header_block(message: bytes) -> bytes:
    """The header section only: parsing it does not split the whole body into lines."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
        return message if end < 0 else message[: end + 2]
    return message[: end + 4]


def _dkim_signatures(message: bytes) -> list[dict[bytes, bytes] | None]:
    try:
        headers, _ = dkim.rfc822_parse(_header_block(message))
    except dkim.DKIMException:
        return []
    out: list[dict[bytes, bytes] | None] = []
    for name, value in headers:
        if bytes(name).lower() == b"dkim-signature":
            try:
                out.append(dkim.util.parse_tag_value(bytes(value)))
            except dkim.util.InvalidTagValueList:
                out.append(None)
    return out


def rsa_pkcs1_v15_verify(hash: object, signature: bytes, public_key: dict[str, int]) -> bool:
    """dkimpy's ``RSASSA_PKCS1_v1_5_verify`` with Python's own integer conversions.

    dkimpy converts between integers and bytes one byte at a time in pure Python
    (``dkim.crypto.int2str``/``str2int``), which was the largest single cost of inbound
    verification (about a millisecond per signature here, more than the RSA operation
    itself).  Same inputs, same encoding (``EMSA_PKCS1_v1_5_encode``), same result, plus
    RFC 8017 8.2.2's range check on the signature representative.
    """
    import dkim.crypto

    n, e = public_key["modulus"], public_key["publicExponent"]
    modlen = (n.bit_length() + 7) // 8
    s = int.from_bytes(bytes(signature), "big")
    if s >= n:
        return False
    expected = dkim.crypto.EMSA_PKCS1_v1_5_encode(hash, modlen)
    return pow(s, e, n).to_bytes(modlen, "big") == bytes(expected)


# dkimpy calls the name it imported into ``dkim``; replace it there (tests compare the two).
dkim.RSASSA_PKCS1_v1_5_verify = rsa_pkcs1_v15_verify


def _verify_one(message: bytes, idx: int, key_txt: bytes, minkey: int) -> tuple[bool, str]:
    def dnsfunc(_name: bytes, timeout: int = 5) -> bytes:
        return key_txt

    try:
        ok = dkim.DKIM(message, minkey=minkey).verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.ValidationError as e:
        return False, str(e)
    return bool(ok), "" if ok else "signature did not verify"


async def verify_dkim(resolver: Resolver, message: bytes, *, minkey: int = 1024) -> list[DkimResult]:
    """Verify every DKIM signature of ``message``; ``[]`` when unsigned."""
    results: list[DkimResult] = []
    for idx, sig in enumerate(_dkim_signatures(message)):
        if sig is None or b"d" not in sig or b"s" not in sig:
            results.append(DkimResult("permerror", reason="malformed signature"))
            continue
        d = sig[b"d"].decode("ascii", "replace").lower()
        s = sig[b"s"].decode("ascii", "replace")
        a = sig.get(b"a", b"").decode("ascii", "replace")
        b = re.sub(rb"\s+", b"", sig.get(b"b", b""))[:8].decode("ascii", "replace")
        res = DkimResult("neutral", d, s, a, b)
        try:
            txts = await resolver.txt(f"{s}._domainkey.{d}")
        except DnsTempError as e:
            res.result, res.reason = "temperror", str(e)
            results.append(res)
            continue
        if not txts:
            res.result, res.reason = "permerror", "no key"
            results.append(res)
            continue
        try:
            ok, reason = await asyncio.to_thread(_verify_one, message, idx, txts[0].encode(), minkey)
        except dkim.DKIMException as e:
            res.result, res.reason = "permerror", str(e)
        else:
            res.result, res.reason = ("pass" if ok else "fail"), reason
        results.append(res)
    return results


# ---------------------------------------------------------------------------
# DMARC (RFC 7489)
# ---------------------------------------------------------------------------

#: Two-label public suffixes under which the organisational domain has three
#: labels.  A heuristic stand-in for the Public Suffix List (RFC 7489 3.2).
PUBLIC_SUFFIX_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "co.uk", "org.uk", "ac.uk", "gov.uk", "net.uk", "ltd.uk", "plc.uk", "me.uk",
        "com.au", "net.au", "org.au", "edu.au", "gov.au",
        "co.nz", "org.nz", "net.nz", "co.jp", "ne.jp", "or.jp", "ac.jp",
        "co.za", "org.za", "com.br", "net.br", "org.br", "com.cn", "net.cn",
        "org.cn", "co.in", "net.in", "org.in", "com.tr", "com.mx", "co.kr",
        "com.ar", "com.sg", "com.hk", "com.tw", "co.il", "com.ua", "com.ru",
        "msk.ru", "spb.ru", "com.pl", "co.id", "com.my",
    }
)  # fmt: skip

DmarcResultCode = Literal["none", "pass", "fail", "temperror", "permerror"]
Policy = Literal["none", "quarantine", "reject"]


def organizational_domain(domain: str, exceptions: frozenset[str] = PUBLIC_SUFFIX_EXCEPTIONS) -> str:
    """Last two labels, or three under a listed two-label public suffix."""
    labels = _norm(domain).split(".")
    n = 3 if ".".join(labels[-2:]) in exceptions else 2
    return ".".join(labels[-n:])


@dataclass(slots=True)
class DmarcResult:
    """DMARC evaluation (RFC 7489 6.6)."""

    result: DmarcResultCode
    from_domain: str = ""
    policy: Policy = "none"  # the p= or sp= that applies
    disposition: Policy = "none"  # what to do with this message
    spf_aligned: bool = False
    dkim_aligned: bool = False
    record: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def _parse_dmarc(txt: str) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for part in txt.split(";"):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        if not sep:
            return None
        tags.setdefault(k.strip().lower(), v.strip())
    if tags.get("v") != "DMARC1" or not txt.lstrip().startswith("v"):
        return None
    return tags


def _aligned(a: str, b: str, mode: str, exceptions: frozenset[str]) -> bool:
    a, b = _norm(a), _norm(b)
    if mode == "s":
        return a == b
    return organizational_domain(a, exceptions) == organizational_domain(b, exceptions)


def _from_domain(message: bytes) -> str | None:
    """Domain of the single RFC5322.From address, or None (RFC 7489 6.6.1)."""
    try:
        headers, _ = dkim.rfc822_parse(_header_block(message))
    except dkim.DKIMException:
        return None
    froms = [bytes(v) for n, v in headers if bytes(n).lower() == b"from"]
    if len(froms) != 1:
        return None
    addrs = getaddresses([froms[0].decode("utf-8", "replace").strip()])
    domains = {a.rpartition("@")[2].lower() for _, a in addrs if "@" in a}
    if len(domains) != 1:
        return None
    d = domains.pop().strip().rstrip(">")
    return d if _valid_domain(d) else None


# ---------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class AuthResults:
    """SPF, DKIM and DMARC outcomes plus the header that records them."""

    authserv_id: str
    spf: SpfResult
    dkim: list[DkimResult]
    dmarc: DmarcResult

    def header_value(self) -> str:
        """``Authentication-Results`` field body (RFC 8601 2.2), folded."""
        parts = [self.authserv_id]
        s = self.spf
        prop = "smtp.mailfrom" if s.scope == "mailfrom" else "smtp.helo"
        parts.append(f"spf={s.result} {prop}={_ar_value(s.identity)}")
        if not self.dkim:
            parts.append("dkim=none")
        for d in self.dkim:
            item = f"dkim={d.result}"
            if d.domain:
                item += f" header.d={_ar_value(d.domain)} header.s={_ar_value(d.selector)}"
            if d.b:
                item += f" header.b={_ar_value(d.b)}"
            parts.append(item)
        m = self.dmarc
        item = f"dmarc={m.result}"
        if m.record:
            item += f" (p={m.policy} dis={m.disposition.upper()})"
        if m.from_domain:
            item += f" header.from={_ar_value(m.from_domain)}"
        parts.append(item)
        return ";\r\n\t".join(parts)

    def header(self) -> str:
        """The complete ``Authentication-Results: ...`` field with CRLF."""
        return f"Authentication-Results: {self.header_value()}\r\n"


def _ar_value(v: str) -> str:
    # RFC 8601 2.2: value is a token or quoted-string; keep it one or the other.
    v = re.sub(r"[\x00-\x1f\x7f]", "", v)
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+", v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InboundAuthenticator:
    """Evaluate SPF, DKIM and DMARC for one received message.

    Args:
        resolver: DNS (``DnsPythonResolver`` in production).
        authserv_id: our host name, the first token of the
            ``Authentication-Results`` header (RFC 8601 2.5).
        psl_exceptions: two-label public suffixes for the org-domain heuristic.
        dkim_minkey: minimum RSA key size accepted (RFC 8301: 1024).
    """

    def __init__(
        self,
        resolver: Resolver,
        authserv_id: str,
        *,
        psl_exceptions: frozenset[str] = PUBLIC_SUFFIX_EXCEPTIONS,
        dkim_minkey: int = 1024,
    ) -> None:
        self.resolver = resolver
        self.authserv_id = authserv_id
        self.psl_exceptions = psl_exceptions
        self.dkim_minkey = dkim_minkey

    async def check_spf(self, ip: str, mail_from: str, helo: str) -> SpfResult:
        """See module-level ``check_spf``."""
        return await check_spf(self.resolver, ip, mail_from, helo)

    async def verify_dkim(self, message: bytes) -> list[DkimResult]:
        """Verify every DKIM signature (``[]`` when unsigned)."""
        return await verify_dkim(self.resolver, message, minkey=self.dkim_minkey)

    async def _dmarc_record(self, domain: str) -> dict[str, str] | None:
        txts = await self.resolver.txt(f"_dmarc.{domain}")
        recs = [r for r in (_parse_dmarc(t) for t in txts if t.lstrip()[:8].lower() == "v=dmarc1") if r]
        # RFC 7489 6.6.3: more than one record -> no policy.
        return recs[0] if len(recs) == 1 else None

    async def check_dmarc(
        self, message: bytes, spf: SpfResult, dkim_results: list[DkimResult]
    ) -> DmarcResult:
        """RFC 7489 6.6: policy discovery, alignment and disposition."""
        from_domain = _from_domain(message)
        if from_domain is None:
            return DmarcResult("permerror", reason="no single RFC5322.From domain")
        org = organizational_domain(from_domain, self.psl_exceptions)
        try:
            rec = await self._dmarc_record(from_domain)
            if rec is None and org != from_domain:
                rec = await self._dmarc_record(org)
        except DnsTempError as e:
            return DmarcResult("temperror", from_domain, reason=str(e))
        if rec is None:
            return DmarcResult("none", from_domain)
        p = rec.get("p", "").lower()
        if p not in ("none", "quarantine", "reject"):
            # RFC 7489 6.6.3: invalid p with rua= is treated as p=none.
            if "rua" not in rec:
                return DmarcResult("none", from_domain, reason="invalid p=")
            p = "none"
        policy: Policy = p  # type: ignore[assignment]
        if from_domain != org and rec.get("sp", "").lower() in ("none", "quarantine", "reject"):
            policy = rec["sp"].lower()  # type: ignore[assignment]
        aspf = rec.get("aspf", "r").lower()
        adkim = rec.get("adkim", "r").lower()
        spf_ok = (
            spf.result == "pass"
            and spf.scope == "mailfrom"
            and _aligned(spf.domain, from_domain, aspf, self.psl_exceptions)
        )
        dkim_ok = any(
            d.result == "pass" and _aligned(d.domain, from_domain, adkim, self.psl_exceptions)
            for d in dkim_results
        )
        passed = spf_ok or dkim_ok
        return DmarcResult(
            "pass" if passed else "fail",
            from_domain,
            policy=policy,
            disposition="none" if passed else policy,
            spf_aligned=spf_ok,
            dkim_aligned=dkim_ok,
            record=rec,
        )

    async def evaluate(self, *, ip: str, helo: str, mail_from: str, message: bytes) -> AuthResults:
        """Run SPF, DKIM and DMARC for one message.

        Args:
            ip: client address; helo: its EHLO name; mail_from: reverse-path
            (``""`` for null); message: the DATA bytes.

        Returns:
            ``AuthResults``; ``.header()`` is the field to prepend and
            ``.dmarc.disposition`` the policy the front-end may enforce.
        """
        spf_task = self.check_spf(ip, mail_from, helo)
        dkim_task = self.verify_dkim(message)
        spf, dkim_results = await asyncio.gather(spf_task, dkim_task)
        dmarc_result = await self.check_dmarc(message, spf, dkim_results)
        return AuthResults(self.authserv_id, spf, dkim_results, dmarc_result)
