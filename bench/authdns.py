"""A small authoritative DNS server on loopback, for the verification benchmark and tests.

dnspython parses and builds the messages; asyncio serves UDP.  Zones are plain data::

    server = AuthDNS({"sender1.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
                      "_dmarc.sender1.test": {"TXT": ["v=DMARC1; p=reject"]}},
                     ttl=300, negative_ttl=300)
    port = await server.start()          # 127.0.0.1:<port>, UDP

Every name under a zone apex that is not listed answers NXDOMAIN, a listed name without
the asked type answers NOERROR with no records ("NODATA"); both carry the zone's SOA
in the authority section, whose MINIMUM is ``negative_ttl`` (RFC 2308).  ``servfail``
names answer SERVFAIL, ``drop`` names are never answered (a dead server), and ``delay``
postpones every answer (a slow resolver).  ``queries`` counts what was asked, per
(name, type), so tests can see what a cache saved.

Run as a script it serves the benchmark zones (``--domains N``) until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class AuthDNS(asyncio.DatagramProtocol):
    def __init__(
        self,
        records: Mapping[str, Mapping[str, Iterable[str]]],
        *,
        ttl: int = 300,
        negative_ttl: int = 300,
        servfail: Iterable[str] = (),
        drop: Iterable[str] = (),
        delay: float = 0.0,
    ) -> None:
        self.records = {dns.name.from_text(n): {t.upper(): list(v) for t, v in rr.items()} for n, rr in records.items()}
        self.apexes = {n.split(2)[1] if len(n) > 2 else n for n in self.records}  # "x.y.test." -> "y.test."
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.servfail = {dns.name.from_text(n) for n in servfail}
        self.drop = {dns.name.from_text(n) for n in drop}
        self.delay = delay
        self.queries: Counter[tuple[str, str]] = Counter()
        self.transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, tcp: bool = True) -> int:
        """Serve UDP (and TCP on the same port, for answers that do not fit 512 bytes
        to a client without EDNS, such as libresolv's); returns the port."""
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
            self.transport = transport  # type: ignore[assignment]
            bound = int(transport.get_extra_info("sockname")[1])
            try:
                self.tcp = await asyncio.start_server(self._tcp_client, host, bound) if tcp else None
            except OSError as e:
                # port 0 chose a UDP port whose TCP twin is held by someone else: draw again
                transport.close()
                if port != 0 or e.errno != errno.EADDRINUSE or attempt == 19:
                    raise
                continue
            return bound
        raise AssertionError("unreachable")

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                query = dns.message.from_wire(await reader.readexactly(size))
                q = query.question[0]
                self.queries[(q.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(q.rdtype))] += 1
                wire = self.answer(query).to_wire()
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, dns.exception.DNSException):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if getattr(self, "tcp", None) is not None:
            self.tcp.close()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        q = query.question[0]
        self.queries[(q.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(q.rdtype))] += 1
        if q.name in self.drop:
            return
        reply = self.answer(query)
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self._send, reply, addr)
        else:
            self._send(reply, addr)

    def _send(self, reply: dns.message.Message, addr: Any) -> None:
        if self.transport is None:
            return
        limit = max(512, reply.payload) if reply.edns >= 0 else 512
        try:
            wire = reply.to_wire(max_size=limit)
        except dns.exception.TooBig:  # RFC 1035 4.2.1 / RFC 7766: truncate, the client retries over TCP
            reply.answer.clear()
            reply.authority.clear()
            reply.flags |= dns.flags.TC
            wire = reply.to_wire()
        self.transport.sendto(wire, addr)

    def _apex(self, name: dns.name.Name) -> dns.name.Name:
        for apex in sorted(self.apexes, key=len, reverse=True):
            if name.is_subdomain(apex):
                return apex
        return name.parent() if len(name) > 1 else name

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        q = query.question[0]
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if q.name in self.servfail:
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        rtype = dns.rdatatype.to_text(q.rdtype)
        node = self.records.get(q.name)
        if node is not None and rtype in node:
            rrset = dns.rrset.from_text_list(q.name, self.ttl, dns.rdataclass.IN, rtype,
                                             [_quote(v) if rtype == "TXT" else v for v in node[rtype]])
            reply.answer.append(rrset)
            return reply
        if node is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        apex = self._apex(q.name)
        soa = f"ns.{apex} hostmaster.{apex} 1 3600 600 86400 {self.negative_ttl}"
        reply.authority.append(dns.rrset.from_text(apex, self.negative_ttl, "IN", "SOA", soa))
        return reply


def _quote(text: str) -> str:
    """TXT presentation form: 255-octet character-strings, quoted."""
    raw = text.replace("\\", "\\\\").replace('"', '\\"')
    return " ".join(f'"{raw[i:i + 250]}"' for i in range(0, len(raw), 250)) or '""'


def main() -> None:  # pragma: no cover - run by bench/dns_verify.py
    import json

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5353)
    p.add_argument("--zones", help="JSON file: {name: {type: [values]}}")
    p.add_argument("--ready", help="write the bound port here once serving")
    p.add_argument("--ttl", type=int, default=300)
    args = p.parse_args()

    async def serve() -> None:
        records = json.loads(open(args.zones).read()) if args.zones else {  # noqa: SIM115
            "example.test": {"A": ["127.0.0.1"], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]}}
        server = AuthDNS(records, ttl=args.ttl, negative_ttl=args.ttl)
        port = await server.start(args.host, args.port)
        if args.ready:
            with open(args.ready, "w") as f:
                f.write(str(port))
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
