"""SPF, DKIM, DMARC and Authentication-Results against a dict-backed resolver."""

from __future__ import annotations

import asyncio

import pytest

from esam_mail.services.mailflow.dkim import DkimSigner, generate_key
from esam_mail.services.mailflow.inbound_auth import (
    DkimResult,
    InboundAuthenticator,
    SpfResult,
    StaticResolver,
    check_spf,
    organizational_domain,
)

IP = "192.0.2.10"


def spf(record, ip=IP, mail_from="user@example.com", helo="mx.example.com", txt=None, **more):
    r = StaticResolver(txt={"example.com": record, **(txt or {})}, **more)
    return asyncio.run(check_spf(r, ip, mail_from, helo))


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", IP, "pass"),
        ("v=spf1 ip4:198.51.100.1 -all", IP, "fail"),
        ("v=spf1 ip4:198.51.100.1 ~all", IP, "softfail"),
        ("v=spf1 ?all", IP, "neutral"),
        ("v=spf1 ip4:198.51.100.1", IP, "neutral"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::25", "pass"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db9::25", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "::ffff:192.0.2.10", "pass"),
        ("v=spf1 a -all", IP, "pass"),
        ("v=spf1 a:other.example.com/24 -all", "192.0.2.99", "pass"),
        ("v=spf1 mx -all", "198.51.100.25", "pass"),
        ("v=spf1 include:_spf.provider.test -all", "203.0.113.5", "pass"),
        ("v=spf1 include:_spf.provider.test -all", IP, "fail"),
        ("v=spf1 redirect=_spf.provider.test", "203.0.113.5", "pass"),
        ("v=spf1 redirect=_spf.provider.test", IP, "softfail"),
        ("v=spf1 exists:%{i}._spf.example.com -all", IP, "pass"),
        ("v=spf1 exists:%{ir}.%{v}._spf.example.com -all", IP, "fail"),
        ("v=spf1 include:nothing.test -all", IP, "permerror"),
        ("v=spf1 foo:bar -all", IP, "permerror"),
        ("v=spf1 include:broken.test -all", IP, "temperror"),
    ],
)
def test_spf_cases(record, ip, expected):
    res = spf(
        [record, "some other txt"],
        ip=ip,
        txt={"_spf.provider.test": ["v=spf1 ip4:203.0.113.0/24 ~all"]},
        a={
            "example.com": [IP],
            "other.example.com": ["192.0.2.1"],
            "mx1.example.com": ["198.51.100.25"],
            "192.0.2.10._spf.example.com": ["127.0.0.2"],
        },
        mx={"example.com": [(10, "mx1.example.com")]},
        fail=["broken.test"],
    )
    assert res.result == expected, res.reason


def test_spf_none_and_multiple_records():
    assert spf([]).result == "none"
    assert spf(["v=spf1 -all", "v=spf1 +all"]).result == "permerror"
    assert spf(["v=spf10 +all"]).result == "none"


def test_spf_lookup_limit_is_ten():
    chain = {f"l{i}.test": [f"v=spf1 include:l{i + 1}.test -all"] for i in range(12)}
    res = spf(["v=spf1 include:l0.test -all"], txt=chain)
    assert res.result == "permerror"
    assert "too many" in res.reason


def test_spf_void_lookup_limit():
    res = spf(["v=spf1 a:v1.test a:v2.test a:v3.test -all"])
    assert res.result == "permerror"


def test_spf_null_sender_uses_helo():
    r = StaticResolver(txt={"mx.example.com": [f"v=spf1 ip4:{IP} -all"]})
    res = asyncio.run(check_spf(r, IP, "", "mx.example.com"))
    assert (res.result, res.scope, res.identity) == ("pass", "helo", "mx.example.com")


def test_spf_macro_local_part():
    r = StaticResolver(
        txt={"example.com": ["v=spf1 exists:%{l}.%{o}.users.example.com -all"]},
        a={"user.example.com.users.example.com": ["127.0.0.2"]},
    )
    assert asyncio.run(check_spf(r, IP, "user@example.com", "h")).result == "pass"
    assert asyncio.run(check_spf(r, IP, "other@example.com", "h")).result == "fail"


def test_organizational_domain():
    assert organizational_domain("a.b.example.com") == "example.com"
    assert organizational_domain("mail.example.co.uk") == "example.co.uk"
    assert organizational_domain("example.com.") == "example.com"


# -- DKIM + DMARC ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ed_signer(tmp_path_factory):
    d = tmp_path_factory.mktemp("k")
    path, txt = generate_key(d, "sel", "ed25519-sha256")
    return DkimSigner.from_files("example.com", [("sel", "ed25519-sha256", path)]), txt


def message(from_domain="example.com"):
    return (
        f"From: Alice <alice@{from_domain}>\r\nTo: bob@dest.test\r\n"
        "Subject: hi\r\nMessage-ID: <x@example.com>\r\n\r\nhello\r\n"
    ).encode()


def evaluate(resolver, msg, ip=IP, mail_from="bounce@example.com"):
    auth = InboundAuthenticator(resolver, "mx.dest.test")
    return asyncio.run(auth.evaluate(ip=ip, helo="mail.example.com", mail_from=mail_from, message=msg))


def test_dkim_pass_and_dmarc_pass_with_header(ed_signer):
    s, keytxt = ed_signer
    r = StaticResolver(
        txt={
            "sel._domainkey.example.com": [keytxt],
            "_dmarc.example.com": ["v=DMARC1; p=reject; adkim=s"],
            "example.com": ["v=spf1 -all"],
        }
    )
    res = evaluate(r, s.sign(message()))
    assert [d.result for d in res.dkim] == ["pass"]
    assert res.spf.result == "fail"
    assert (res.dmarc.result, res.dmarc.dkim_aligned, res.dmarc.disposition) == ("pass", True, "none")
    h = res.header()
    assert h.startswith("Authentication-Results: mx.dest.test;")
    assert "spf=fail smtp.mailfrom=bounce@example.com" in h
    assert "dkim=pass header.d=example.com header.s=sel" in h
    assert "dmarc=pass" in h and "header.from=example.com" in h
    assert h.endswith("\r\n")


def test_dkim_tampered_fails_and_dmarc_reject(ed_signer):
    s, keytxt = ed_signer
    r = StaticResolver(
        txt={
            "sel._domainkey.example.com": [keytxt],
            "_dmarc.example.com": ["v=DMARC1; p=reject"],
            "example.com": ["v=spf1 ip4:198.51.100.1 -all"],
        }
    )
    msg = s.sign(message()).replace(b"hello", b"HELLO")
    res = evaluate(r, msg)
    assert res.dkim[0].result == "fail"
    assert (res.dmarc.result, res.dmarc.policy, res.dmarc.disposition) == ("fail", "reject", "reject")
    assert "dmarc=fail (p=reject dis=REJECT)" in res.header_value()


def test_dkim_missing_key_is_permerror_and_dns_failure_temperror(ed_signer):
    s, _ = ed_signer
    assert evaluate(StaticResolver(), s.sign(message())).dkim[0].result == "permerror"
    r = StaticResolver(fail=["sel._domainkey.example.com"])
    assert evaluate(r, s.sign(message())).dkim[0].result == "temperror"


def test_unsigned_message_dkim_none_dmarc_none():
    res = evaluate(StaticResolver(), message())
    assert res.dkim == [] and res.dmarc.result == "none" and res.spf.result == "none"
    assert "dkim=none" in res.header_value()


def test_dmarc_spf_alignment_relaxed_vs_strict():
    txt = {"mail.example.com": [f"v=spf1 ip4:{IP} -all"]}
    relaxed = StaticResolver(txt={**txt, "_dmarc.example.com": ["v=DMARC1; p=quarantine"]})
    res = evaluate(relaxed, message(), mail_from="b@mail.example.com")
    assert res.spf.result == "pass" and res.dmarc.result == "pass" and res.dmarc.spf_aligned
    strict = StaticResolver(txt={**txt, "_dmarc.example.com": ["v=DMARC1; p=quarantine; aspf=s"]})
    res = evaluate(strict, message(), mail_from="b@mail.example.com")
    assert res.dmarc.result == "fail" and res.dmarc.disposition == "quarantine"


def test_dmarc_unaligned_spf_pass_fails():
    r = StaticResolver(
        txt={"evil.test": [f"v=spf1 ip4:{IP} -all"], "_dmarc.example.com": ["v=DMARC1; p=reject"]}
    )
    res = evaluate(r, message(), mail_from="x@evil.test")
    assert res.spf.result == "pass" and res.dmarc.result == "fail"


def test_dmarc_org_domain_fallback_and_sp():
    r = StaticResolver(
        txt={
            "_dmarc.example.co.uk": ["v=DMARC1; p=none; sp=reject"],
        }
    )
    res = evaluate(r, message("news.example.co.uk"), mail_from="")
    assert res.dmarc.from_domain == "news.example.co.uk"
    assert (res.dmarc.result, res.dmarc.policy, res.dmarc.disposition) == ("fail", "reject", "reject")
    assert ("txt", "_dmarc.news.example.co.uk") in r.queries
    res = evaluate(r, message("example.co.uk"))
    assert res.dmarc.policy == "none"


def test_dmarc_temperror_and_bad_from():
    r = StaticResolver(fail=["_dmarc.example.com"])
    assert evaluate(r, message()).dmarc.result == "temperror"
    two_froms = b"From: a@example.com\r\nFrom: b@example.org\r\n\r\nx\r\n"
    assert evaluate(StaticResolver(), two_froms).dmarc.result == "permerror"


def test_dmarc_alignment_uses_passing_dkim_only():
    auth = InboundAuthenticator(StaticResolver(txt={"_dmarc.example.com": ["v=DMARC1; p=reject"]}), "a")
    spf_fail = SpfResult("fail", "example.com", "x@example.com")
    bad = [DkimResult("fail", "example.com", "s")]
    good = [DkimResult("fail", "example.com", "s"), DkimResult("pass", "sub.example.com", "s")]
    assert asyncio.run(auth.check_dmarc(message(), spf_fail, bad)).result == "fail"
    assert asyncio.run(auth.check_dmarc(message(), spf_fail, good)).result == "pass"
