"""Run ``opendkim-testmsg`` (verify mode) against test DNS data, as root.

opendkim-testmsg has no way to be given a key: libopendkim asks the resolver in
/etc/resolv.conf.  So this script re-executes itself in private network and
mount namespaces (``unshare --net --mount``; nothing outside changes), brings up
``lo``, bind-mounts a resolv.conf naming 127.0.0.1 over /etc/resolv.conf, serves
the given TXT records on 127.0.0.1:53 (UDP and TCP, dnspython), and runs
``opendkim-testmsg`` on the message.

Usage: ``python opendkim_verify.py RECORDS.json MESSAGE`` where RECORDS.json maps
owner names to TXT values.  Exit status and output are opendkim-testmsg's
(silent and 0 when the signature verifies).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TESTMSG = "/usr/sbin/opendkim-testmsg"


def answer(wire: bytes, records: dict[str, str]) -> bytes:
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    for question in q.question:
        name = question.name.to_text().rstrip(".").lower()
        value = records.get(name)
        if value is None or question.rdtype != dns.rdatatype.TXT:
            if value is None:
                r.set_rcode(dns.rcode.NXDOMAIN)
            continue
        chunks = " ".join('"' + value[i:i + 255] + '"' for i in range(0, len(value), 255))
        r.answer.append(dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, chunks))
    return r.to_wire()


def serve(records: dict[str, str]) -> None:
    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(answer(data, records), self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            head = self.rfile.read(2)
            if len(head) < 2:
                return  # the readiness probe
            (n,) = struct.unpack("!H", head)
            out = answer(self.rfile.read(n), records)
            self.wfile.write(struct.pack("!H", len(out)) + out)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    for srv in (socketserver.ThreadingUDPServer(("127.0.0.1", 53), Udp),
                socketserver.ThreadingTCPServer(("127.0.0.1", 53), Tcp)):
        threading.Thread(target=srv.serve_forever, daemon=True).start()


def inside(records_path: str, message_path: str) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False) as f:
        f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    subprocess.run(["mount", "--bind", f.name, "/etc/resolv.conf"], check=True)
    with open(records_path) as rf:
        records = {k.rstrip(".").lower(): v for k, v in json.load(rf).items()}
    serve(records)
    with socket.create_connection(("127.0.0.1", 53), timeout=5):
        pass  # listening
    with open(message_path, "rb") as msg:
        res = subprocess.run([TESTMSG], stdin=msg, capture_output=True, timeout=60)
    sys.stdout.write(res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace"))
    os.unlink(f.name)
    return res.returncode


def main() -> int:
    if os.environ.get("ESAM_OPENDKIM_NS") == "1":
        return inside(sys.argv[1], sys.argv[2])
    env = dict(os.environ, ESAM_OPENDKIM_NS="1")
    res = subprocess.run(["unshare", "--net", "--mount", sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                         env=env, timeout=120)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
