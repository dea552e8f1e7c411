"""Mail-client self-configuration and the MTA-STS policy file.

* Thunderbird autoconfig, clientConfig v1.1
  (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat):
  ``GET /.well-known/autoconfig/mail/config-v1.1.xml`` on the mail domain and
  ``GET /mail/config-v1.1.xml`` on ``autoconfig.<domain>``, both with an optional
  ``?emailaddress=``.
* Outlook "POX" autodiscover (MS-OXDSCLI; responseschema/2006a):
  ``POST /autodiscover/autodiscover.xml`` (any case, as clients vary).
* MTA-STS (RFC 8461 3.3): ``GET /.well-known/mta-sts.txt`` on ``mta-sts.<domain>``.

Host names and ports are the public ones (``[public]``), never the bind addresses
of ``[listen]``.  Implicit TLS is listed first (RFC 8314 recommends it), STARTTLS as
the alternative.  Passwords go over TLS only, so ``password-cleartext`` is right.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # only for building, and for parsing a tiny bounded body
from typing import Any

from esam_mail.services.ops import dnsrecords
from esam_mail.web.server import Request, Response, Router, json_response
from esam_mail.web.server import host as request_host

XML = "application/xml; charset=utf-8"
_REQ_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
_RESP_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
_MAX_POX = 16 * 1024
_PREFIXES = ("autoconfig.", "autodiscover.", "mta-sts.")
_ADDR = re.compile(r"^[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}$")


class UnknownDomain(Exception):
    """The request names a domain this server does not serve."""


def _domain_for(cfg: Any, host: str, address: str | None) -> str:
    local = cfg.local_domains
    if address:
        if not _ADDR.match(address):
            raise UnknownDomain(address)
        dom = address.rpartition("@")[2].lower()
        if dom not in local:
            raise UnknownDomain(dom)
        return dom
    for prefix in _PREFIXES:
        if host.startswith(prefix):
            host = host[len(prefix):]
            break
    return host if host in local else cfg.mail.domain.lower()


def _login_for(cfg: Any, domain: str, address: str | None) -> str:
    """What clients must type as user name: the address on the main domain (the
    directory accepts ``login`` and ``login@<mail.domain>``), else the local part."""
    if address:
        local = address.rpartition("@")[0]
        return address if domain == cfg.mail.domain.lower() else local
    return "%EMAILADDRESS%" if domain == cfg.mail.domain.lower() else "%EMAILLOCALPART%"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def thunderbird_xml(cfg: Any, domain: str, address: str | None = None) -> bytes:
    """clientConfig v1.1 for ``domain``."""
    hosts = dnsrecords.public_hosts(cfg)
    p = cfg.public
    user = _login_for(cfg, domain, address)
    root = ET.Element("clientConfig", version="1.1")
    prov = _sub(root, "emailProvider", id=domain)
    _sub(prov, "domain", domain)
    _sub(prov, "displayName", hosts["display_name"])
    _sub(prov, "displayShortName", hosts["display_name"])
    for port, sock in ((p.imaps_port, "SSL"), (p.imap_port, "STARTTLS")):
        s = _sub(prov, "incomingServer", type="imap")
        _sub(s, "hostname", hosts["imap"])
        _sub(s, "port", str(port))
        _sub(s, "socketType", sock)
        _sub(s, "authentication", "password-cleartext")
        _sub(s, "username", user)
    for port, sock in ((p.submissions_port, "SSL"), (p.submission_port, "STARTTLS")):
        s = _sub(prov, "outgoingServer", type="smtp")
        _sub(s, "hostname", hosts["smtp"])
        _sub(s, "port", str(port))
        _sub(s, "socketType", sock)
        _sub(s, "authentication", "password-cleartext")
        _sub(s, "username", user)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode()


def outlook_xml(cfg: Any, address: str) -> bytes:
    """POX autodiscover response (responseschema 2006a) for ``address``."""
    domain = address.rpartition("@")[2].lower()
    hosts = dnsrecords.public_hosts(cfg)
    p = cfg.public
    root = ET.Element("Autodiscover", xmlns=_RESP_NS)
    resp = _sub(root, "Response", xmlns=_OUTLOOK_NS)
    user = _sub(resp, "User")
    _sub(user, "DisplayName", address)
    acct = _sub(resp, "Account")
    _sub(acct, "AccountType", "email")
    _sub(acct, "Action", "settings")
    login = _login_for(cfg, domain, address)
    for kind, host, port in (("IMAP", hosts["imap"], p.imaps_port), ("SMTP", hosts["smtp"], p.submissions_port)):
        proto = _sub(acct, "Protocol")
        _sub(proto, "Type", kind)
        _sub(proto, "Server", host)
        _sub(proto, "Port", str(port))
        _sub(proto, "DomainRequired", "off")
        _sub(proto, "LoginName", login)
        _sub(proto, "SPA", "off")
        _sub(proto, "SSL", "on")
        _sub(proto, "AuthRequired", "on")
        if kind == "SMTP":
            _sub(proto, "UsePOPAuth", "on")
            _sub(proto, "SMTPLast", "off")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode").encode()


def outlook_error(code: str, message: str) -> bytes:
    root = ET.Element("Autodiscover", xmlns=_RESP_NS)
    resp = _sub(root, "Response")
    err = _sub(resp, "Error", Time="00:00:00", Id="1")
    _sub(err, "ErrorCode", code)
    _sub(err, "Message", message)
    _sub(err, "DebugData", "")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode").encode()


def pox_address(body: bytes) -> str | None:
    """The ``Request/EMailAddress`` of a POX request body, or None if unusable."""
    if len(body) > _MAX_POX or b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        return None  # no DTDs at all: no entity expansion
    try:
        root = ET.fromstring(body)  # noqa: S314 - bounded, DTD-free body checked above
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rpartition("}")[2] == "EMailAddress" and el.text:
            return el.text.strip()
    return None


def register(router: Router, services: Any) -> None:
    async def autoconfig(request: Request) -> Response:
        cfg = services.cfg
        address = request.query_params.get("emailaddress")
        try:
            domain = _domain_for(cfg, request_host(request), address)
        except UnknownDomain:
            return json_response({"error": "not_found"}, 404)
        return Response(thunderbird_xml(cfg, domain, address), 200, media_type=XML,
                        headers={"cache-control": "public, max-age=3600"})

    async def autodiscover(request: Request) -> Response:
        cfg = services.cfg
        address = pox_address(await request.body())
        if address is None:
            return Response(outlook_error("600", "Invalid Request"), 200, media_type=XML)
        try:
            _domain_for(cfg, request_host(request), address)
        except UnknownDomain:
            return Response(outlook_error("600", "Invalid Request"), 200, media_type=XML)
        return Response(outlook_xml(cfg, address), 200, media_type=XML)

    async def mta_sts(request: Request) -> Response:
        return Response(dnsrecords.mta_sts_policy(services.cfg).encode(), 200,
                        media_type="text/plain; charset=utf-8",
                        headers={"cache-control": "public, max-age=86400"})

    router.add("GET", "/.well-known/autoconfig/mail/config-v1.1.xml", autoconfig)
    router.add("GET", "/mail/config-v1.1.xml", autoconfig)
    router.add("POST", "/autodiscover/autodiscover.xml", autodiscover, case_insensitive=True)
    router.add("GET", "/.well-known/mta-sts.txt", mta_sts)
