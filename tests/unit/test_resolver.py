"""The process's DNS resolver against a real authoritative server on loopback (UDP).

Positive answers live for their TTL, negative ones for the SOA's negative TTL (RFC
2308), identical lookups in flight are joined, and failures are remembered for
``servfail_ttl``, so one slow or dead name costs one wait, not one per message.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from esam_mail.services.mailflow.inbound_auth import DnsTempError
from esam_mail.services.mailflow.resolver import CachingResolver, parse_nameserver

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("authdns", ROOT / "bench" / "authdns.py")
assert _spec is not None and _spec.loader is not None
authdns = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(authdns)

ZONE = {
    "sender.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"], "MX": ["10 mx.sender.test."], "A": ["127.0.0.1"]},
    "mx.sender.test": {"A": ["127.0.0.2"]},
    "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
}


def run(test: Callable[[Any, CachingResolver], Awaitable[None]], **server_kw: Any) -> None:
    async def main() -> None:
        server = authdns.AuthDNS(ZONE, **server_kw)
        port = await server.start()
        resolver = CachingResolver(nameservers=[f"127.0.0.1:{port}"], timeout=0.5, lifetime=0.8)
        try:
            await test(server, resolver)
        finally:
            server.close()

    asyncio.run(main())


def test_positive_answers_are_cached_for_their_ttl() -> None:
    async def t(server: Any, r: CachingResolver) -> None:
        assert await r.txt("sender.test") == ["v=spf1 ip4:127.0.0.1 -all"]
        assert await r.txt("Sender.Test") == ["v=spf1 ip4:127.0.0.1 -all"]
        assert await r.mx("sender.test") == [(10, "mx.sender.test")]
        assert await r.a("mx.sender.test") == ["127.0.0.2"]
        assert server.queries[("sender.test", "TXT")] == 1
        await asyncio.sleep(1.2)  # TTL 1 s
        await r.txt("sender.test")
        assert server.queries[("sender.test", "TXT")] == 2

    run(t, ttl=1)


def test_nxdomain_and_nodata_are_cached_for_the_soa_negative_ttl() -> None:
    async def t(server: Any, r: CachingResolver) -> None:
        for _ in range(3):
            assert await r.txt("nobody.sender.test") == []  # NXDOMAIN
            assert await r.txt("mx.sender.test") == []  # the name exists, no TXT: NODATA
        assert server.queries[("nobody.sender.test", "TXT")] == 1
        assert server.queries[("mx.sender.test", "TXT")] == 1
        await asyncio.sleep(1.2)  # SOA MINIMUM 1 s
        assert await r.txt("nobody.sender.test") == []
        assert server.queries[("nobody.sender.test", "TXT")] == 2

    run(t, negative_ttl=1)


def test_identical_lookups_in_flight_are_joined() -> None:
    async def t(server: Any, r: CachingResolver) -> None:
        got = await asyncio.gather(*(r.txt("_dmarc.sender.test") for _ in range(50)))
        assert got == [["v=DMARC1; p=reject"]] * 50
        assert server.queries[("_dmarc.sender.test", "TXT")] == 1
        assert r.stats["joined"] == 49

    run(t, delay=0.2)


@pytest.mark.parametrize("kind", ["servfail", "drop"])
def test_a_failing_name_costs_one_wait_then_fails_fast(kind: str) -> None:
    async def t(server: Any, r: CachingResolver) -> None:
        with pytest.raises(DnsTempError):
            await r.txt("sender.test")
        asked = server.queries[("sender.test", "TXT")]
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(DnsTempError):
                await r.txt("sender.test")
        assert time.monotonic() - started < 0.8  # 20 lookups in less than one lookup's lifetime
        assert server.queries[("sender.test", "TXT")] == asked  # not asked again
        assert await r.txt("_dmarc.sender.test") == ["v=DMARC1; p=reject"]  # other names unaffected

    run(t, **{kind: ["sender.test"]})


def test_the_loop_keeps_running_while_a_lookup_waits() -> None:
    async def t(server: Any, r: CachingResolver) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await r.txt("sender.test")  # answered after 0.3 s
        task.cancel()
        assert ticks >= 5  # the loop ran other work while the answer was pending

    run(t, delay=0.3)


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.1", ("192.0.2.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:53", ("::1", 53)), ("2001:db8::53", ("2001:db8::53", 53)),
])
def test_nameserver_syntax(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


def test_bad_nameservers_are_config_problems_naming_the_key(tmp_path: Path) -> None:
    from esam_mail import config
    from esam_mail.errors import ConfigError
    from tests.conftest import write_config

    path = write_config(tmp_path, dns={"nameservers": ["127.0.0.1:5353", "ns.example", "10.0.0.1:99999"]})
    with pytest.raises(ConfigError) as ei:
        config.load(path)
    problems = "\n".join(ei.value.problems)
    assert "dns.nameservers[1]: 'ns.example' is not an IP address" in problems
    assert "dns.nameservers[2]" in problems and "dns.nameservers[0]" not in problems


def test_fast_rsa_verify_agrees_with_dkimpy_on_good_and_bad_signatures() -> None:
    """The replacement of dkimpy's byte-at-a-time RSA verify gives the same answers."""
    import hashlib

    import dkim
    import dkim.crypto
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from esam_mail.services.mailflow.inbound_auth import rsa_pkcs1_v15_verify

    assert dkim.RSASSA_PKCS1_v1_5_verify is rsa_pkcs1_v15_verify  # dkimpy uses ours
    for bits in (1024, 2048):
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        priv = dkim.crypto.parse_pem_private_key(pem)
        pub = {"modulus": priv["modulus"], "publicExponent": priv["publicExponent"]}
        for text in (b"hello", b"x" * 1000):
            sig = bytes(dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(text), priv))
            bad = bytes([sig[0] ^ 1]) + sig[1:]
            for candidate, h in ((sig, hashlib.sha256(text)), (bad, hashlib.sha256(text)),
                                 (sig, hashlib.sha256(text + b"!")), (sig, hashlib.sha1(text))):
                want = dkim.crypto.RSASSA_PKCS1_v1_5_verify(h.copy(), candidate, pub)
                assert rsa_pkcs1_v15_verify(h.copy(), candidate, pub) == want
            assert rsa_pkcs1_v15_verify(hashlib.sha256(text), sig, pub) is True
    # a signature representative >= n is refused (RFC 8017 8.2.2)
    assert rsa_pkcs1_v15_verify(hashlib.sha256(b"x"), (pub["modulus"] + 1).to_bytes(256, "big"), pub) is False


def test_a_long_txt_record_comes_back_whole_over_tcp_after_truncation() -> None:
    """A 2048-bit DKIM key does not fit 512 bytes: the test server truncates (TC) for a
    client without EDNS, and answers the TCP retry (libresolv's path, as OpenDKIM's)."""
    import dns.asyncquery
    import dns.flags
    import dns.message

    key = "v=DKIM1; k=rsa; p=" + "A" * 736  # a 4096-bit key

    async def main() -> None:
        server = authdns.AuthDNS({"s._domainkey.d.test": {"TXT": [key]}})
        port = await server.start()
        try:
            q = dns.message.make_query("s._domainkey.d.test", "TXT", use_edns=False)
            udp = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
            assert udp.flags & dns.flags.TC and not udp.answer
            tcp = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
            assert b"".join(tcp.answer[0][0].strings).decode() == key
            r = CachingResolver(nameservers=[f"127.0.0.1:{port}"])
            assert await r.txt("s._domainkey.d.test") == [key]
        finally:
            server.close()

    asyncio.run(main())


def test_authdns_retries_when_the_tcp_twin_of_its_udp_port_is_taken() -> None:
    """The test server binds UDP on port 0, then TCP on the same number: on a busy machine
    that TCP port can already be held (another process's listener or ephemeral connection),
    which failed tests at random with EADDRINUSE.  It picks a new port instead."""

    async def main() -> None:
        import socket

        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        loop = asyncio.get_running_loop()
        real = loop.create_datagram_endpoint
        offered: list[int] = []

        async def first_the_taken_port(factory: Any, local_addr: tuple[str, int], **kw: Any) -> Any:
            port = local_addr[1] if offered or local_addr[1] else taken  # the unlucky draw first
            offered.append(port)
            return await real(factory, local_addr=(local_addr[0], port), **kw)

        loop.create_datagram_endpoint = first_the_taken_port  # type: ignore[method-assign]
        server = authdns.AuthDNS(ZONE)
        try:
            port = await server.start()
            del loop.create_datagram_endpoint  # the resolver below uses the real one
            assert offered[0] == taken and port != taken and len(offered) == 2
            r = CachingResolver(nameservers=[f"127.0.0.1:{port}"], timeout=0.5, lifetime=0.8)
            assert await r.txt("sender.test") == ["v=spf1 ip4:127.0.0.1 -all"]
        finally:
            server.close()
            held.close()

    asyncio.run(main())
