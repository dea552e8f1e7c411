"""Autoconfig, autodiscover, MTA-STS and /metrics over the real HTTP listener."""

from __future__ import annotations

import imaplib
import re
import smtplib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

PUBLIC = {"imap_host": "imap.example.kz", "smtp_host": "smtp.example.kz", "mx_hosts": ["mx1.example.kz"],
          "display_name": "Example Post"}
OUT = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def http(r: Running, path: str, *, host: str | None = None, data: bytes | None = None,
         method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{r.ports['http']}{path}", data=data, method=method)
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture
def web(make_running: Any) -> Running:
    return make_running(public=PUBLIC, mail={"domain": "esam.test", "extra_domains": ["alias.test"]})


def servers(xml: bytes, kind: str) -> list[dict[str, str]]:
    root = ET.fromstring(xml)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    return [{c.tag: (c.text or "") for c in s} | {"type": s.get("type", "")}
            for s in root.iter(kind)]


def test_thunderbird_well_known_advertises_public_hosts_and_tls(web: Running) -> None:
    status, headers, body = http(web, "/.well-known/autoconfig/mail/config-v1.1.xml", host="esam.test")
    assert status == 200 and "xml" in headers["content-type"]
    root = ET.fromstring(body)
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "esam.test"
    assert provider.findtext("domain") == "esam.test" and provider.findtext("displayName") == "Example Post"
    incoming = servers(body, "incomingServer")
    assert [(s["type"], s["hostname"], s["port"], s["socketType"]) for s in incoming] == [
        ("imap", "imap.example.kz", "993", "SSL"), ("imap", "imap.example.kz", "143", "STARTTLS")]
    outgoing = servers(body, "outgoingServer")
    assert [(s["type"], s["hostname"], s["port"], s["socketType"]) for s in outgoing] == [
        ("smtp", "smtp.example.kz", "465", "SSL"), ("smtp", "smtp.example.kz", "587", "STARTTLS")]
    for s in incoming + outgoing:
        assert s["authentication"] == "password-cleartext"
        assert s["username"] == "%EMAILADDRESS%"
    # the dev bind addresses never leak into what clients are told
    assert b"127.0.0.1" not in body and str(web.ports["imaps"]).encode() not in body


def test_thunderbird_autoconfig_host_form_with_emailaddress(web: Running) -> None:
    status, _, body = http(web, "/mail/config-v1.1.xml?emailaddress=alice%40esam.test",
                           host="autoconfig.esam.test")
    assert status == 200
    assert {s["username"] for s in servers(body, "incomingServer")} == {"alice@esam.test"}


def test_thunderbird_extra_domain_uses_the_local_part(web: Running) -> None:
    status, _, body = http(web, "/mail/config-v1.1.xml", host="autoconfig.alias.test")
    root = ET.fromstring(body)
    assert status == 200 and root.find("emailProvider").get("id") == "alias.test"  # type: ignore[union-attr]
    assert {s["username"] for s in servers(body, "outgoingServer")} == {"%EMAILLOCALPART%"}


def test_thunderbird_foreign_domain_is_404(web: Running) -> None:
    status, _, _ = http(web, "/mail/config-v1.1.xml?emailaddress=bob%40gmail.com")
    assert status == 404


POX = (b'<?xml version="1.0" encoding="utf-8"?>'
       b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
       b"<Request><EMailAddress>%s</EMailAddress><AcceptableResponseSchema>"
       b"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
       b"</AcceptableResponseSchema></Request></Autodiscover>")


@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"])
def test_outlook_pox_autodiscover(web: Running, path: str) -> None:
    status, headers, body = http(web, path, data=POX % b"alice@esam.test", method="POST")
    assert status == 200 and "xml" in headers["content-type"]
    root = ET.fromstring(body)
    assert root.tag == "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}Autodiscover"
    account = root.find(f"{OUT}Response/{OUT}Account")
    assert account is not None
    assert account.findtext(f"{OUT}AccountType") == "email" and account.findtext(f"{OUT}Action") == "settings"
    protos = {p.findtext(f"{OUT}Type"): p for p in account.findall(f"{OUT}Protocol")}
    assert set(protos) == {"IMAP", "SMTP"}
    want = {"IMAP": ("imap.example.kz", "993"), "SMTP": ("smtp.example.kz", "465")}
    for kind, p in protos.items():
        assert (p.findtext(f"{OUT}Server"), p.findtext(f"{OUT}Port")) == want[kind]
        assert p.findtext(f"{OUT}SSL") == "on" and p.findtext(f"{OUT}SPA") == "off"
        assert p.findtext(f"{OUT}LoginName") == "alice@esam.test"
        assert p.findtext(f"{OUT}AuthRequired") == "on"


def test_outlook_bad_requests_get_an_error_document(web: Running) -> None:
    for body in (POX % b"bob@gmail.com", b"<nope", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'):
        status, _, resp = http(web, "/autodiscover/autodiscover.xml", data=body, method="POST")
        assert status == 200 and b"<ErrorCode>600</ErrorCode>" in resp and b"Protocol" not in resp


def test_mta_sts_policy_file(web: Running) -> None:
    status, headers, body = http(web, "/.well-known/mta-sts.txt", host="mta-sts.esam.test")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert body == b"version: STSv1\r\nmode: testing\r\nmx: mx1.example.kz\r\nmax_age: 604800\r\n"


def sample(text: str, name: str, **labels: str) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name + ("{" + sel + "}" if sel else "")) + r" (\S+)$"
    m = re.search(pattern, text, re.M)
    assert m, f"no sample {name}{labels}"
    return float(m.group(1))


def scrape(r: Running) -> str:
    status, headers, body = http(r, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def test_metrics_count_smtp_imap_auth_and_queue(web: Running) -> None:
    web.add_mailbox("alice", "correct horse")
    before = scrape(web)
    assert "# TYPE esam_imap_command_duration_seconds histogram" in before
    # SMTP: one MX connection, one unknown recipient (550), one accepted message
    with smtplib.SMTP("127.0.0.1", web.ports["smtp"], timeout=10) as s:
        s.ehlo("client.example")
        s.mail("x@sender.example")
        assert s.rcpt("nobody@esam.test")[0] == 550
        assert s.rcpt("alice@esam.test")[0] == 250
        s.data(b"Subject: hi\r\n\r\nhello\r\n")
    # submission with a wrong password: an auth failure for smtp
    with smtplib.SMTP_SSL("127.0.0.1", web.ports["submissions"], context=client_tls(), timeout=10) as s:
        s.ehlo()
        s.user, s.password = "alice", "wrong password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)  # exactly one attempt (login() would try LOGIN too)
    # IMAP: a login, SELECT and FETCH over implicit TLS
    im = imaplib.IMAP4_SSL("127.0.0.1", web.ports["imaps"], ssl_context=client_tls(), timeout=10)
    im.login("alice", "correct horse")
    im.select("INBOX")
    im.fetch("1", "(BODY.PEEK[])")
    im.uid("FETCH", "1", "(FLAGS)")
    im.logout()
    # a queued outbound message
    web.lt.run(_enqueue(web))
    after = scrape(web)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("esam_smtp_connections_total", listener="mx") == 1
    assert delta("esam_smtp_connections_total", listener="submissions") == 1
    assert delta("esam_smtp_rejections_total", stage="rcpt", code="550") == 1
    assert delta("esam_smtp_messages_accepted_total") == 1
    assert delta("esam_auth_failures_total", service="smtp") == 1
    assert delta("esam_imap_connections_total", listener="imaps") == 1
    assert delta("esam_imap_command_duration_seconds_count", command="login") == 1
    assert delta("esam_imap_command_duration_seconds_count", command="fetch") == 1
    assert delta("esam_imap_command_duration_seconds_count", command="uid_fetch") == 1
    assert sample(after, "esam_imap_command_duration_seconds_bucket", command="select", le="+Inf") >= 1
    assert sample(after, "esam_queue_messages") == 1
    assert sample(after, "esam_queue_oldest_age_seconds") >= 0
    # no label value outside the documented sets ever appears
    assert 'listener="127.0.0.1"' not in after and "peer=" not in after


async def _enqueue(r: Running) -> None:
    import asyncio

    await asyncio.to_thread(r.services.spool.enqueue, "alice@esam.test", ["bob@remote.example"],
                            b"Subject: out\r\n\r\nbody\r\n", now=1.0e12)
