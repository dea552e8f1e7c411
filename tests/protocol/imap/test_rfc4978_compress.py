"""RFC 4978 COMPRESS=DEFLATE: raw deflate both ways, above TLS, bounded inflation.

The client side is zlib itself (``wbits=-15``, ``Z_SYNC_FLUSH`` after each command), so
these tests check the wire format any client (mbsync, Thunderbird, imaplib with a
wrapper) sees, on real sockets: implicit TLS, STARTTLS and plaintext test ports.
"""

from __future__ import annotations

import time
import tracemalloc
import zlib

import pytest

from tests.protocol.imap.conftest import PASSWORD, Env, Raw, msg
from tests.rawclient import open_socket

pytestmark = pytest.mark.protocol


class ZRaw(Raw):
    """The shared raw client with a deflate layer switched on by :meth:`compress`."""

    zin: zlib._Decompress | None = None
    zout: zlib._Compress | None = None
    wire_in = 0

    @classmethod
    def tls(cls, env: Env) -> ZRaw:
        return cls(open_socket(env.tls_port, tls=env.client_ctx()))

    @classmethod
    def plain(cls, env: Env) -> ZRaw:
        return cls(open_socket(env.plain_port))

    def compress(self) -> list[bytes]:
        out = self.cmd(b"Z", b"COMPRESS DEFLATE")
        if out[-1].startswith(b"Z OK"):
            assert self.buf == b"", "nothing may follow the OK uncompressed"
            self.zin = zlib.decompressobj(-15)
            self.zout = zlib.compressobj(6, zlib.DEFLATED, -15)
        return out

    def send(self, data: bytes) -> None:
        if self.zout is not None:
            data = self.zout.compress(data) + self.zout.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.wire_in += len(chunk)
        self.buf += self.zin.decompress(chunk) if self.zin is not None else chunk
        return bool(chunk)


def _caps(r: Raw) -> list[bytes]:
    line = next(x for x in r.cmd(b"C", b"CAPABILITY") if x.startswith(b"* CAPABILITY"))
    return line.split()[2:]


def _session(env, index: int):
    return env.loop.call(lambda: next(iter(env.factories[index].sessions)))


def test_advertised_after_login_only(env):
    r = ZRaw.tls(env)
    assert b"COMPRESS=DEFLATE" not in _caps(r)
    r.login()
    assert b"COMPRESS=DEFLATE" in _caps(r)


def test_rfc_example_over_implicit_tls(env):
    """RFC 4978 §3's exchange, then a whole session compressed inside TLS."""
    for i in range(3):
        env.deliver(msg(subject=f"Compressed {i}", body="hello world\r\n" * 200))
    r = ZRaw.tls(env)
    r.login()
    assert r.compress() == [b"Z OK DEFLATE active."]
    before = r.wire_in
    out = r.cmd(b"s", b"SELECT INBOX")
    assert b"* 3 EXISTS" in out and out[-1].startswith(b"s OK [READ-WRITE]")
    out = r.cmd(b"f", b"FETCH 1:3 (BODY.PEEK[] FLAGS)")
    assert out[-1] == b"f OK FETCH completed."
    assert sum(b"hello world\r\n" * 200 in x for x in out) == 3
    # really compressed on the wire: 3 x 2.6 KB bodies arrive in far fewer octets
    assert r.wire_in - before < 2500, r.wire_in - before
    assert r.cmd(b"n", b"NOOP") == [b"n OK NOOP completed."]
    assert r.cmd(b"x", b"LOGOUT") == [b"* BYE Logging out.", b"x OK LOGOUT completed."]


def test_after_starttls(env):
    r = ZRaw.plain(env)
    assert r.cmd(b"t", b"STARTTLS")[-1].startswith(b"t OK")
    r.sock = env.client_ctx().wrap_socket(r.sock, server_hostname="127.0.0.1")
    r.cmd(b"l", b'LOGIN alice "' + PASSWORD.encode() + b'"')
    assert r.compress()[-1] == b"Z OK DEFLATE active."
    out = r.cmd(b"a", b"LIST \"\" INBOX")
    assert out == [b'* LIST (\\HasNoChildren) "/" "INBOX"', b"a OK LIST completed."] or \
        out[-1] == b"a OK LIST completed."
    # a literal through the compressed stream (APPEND, synchronizing literal)
    body = msg(subject="via deflate")
    r.send(b"p APPEND INBOX {%d}\r\n" % len(body))
    assert r.response().startswith(b"+")
    r.send(body + b"\r\n")
    assert r.until(b"p")[-1].startswith(b"p OK [APPENDUID")
    assert r.cmd(b"x", b"LOGOUT")[-1] == b"x OK LOGOUT completed."


def test_compress_twice_is_compressionactive(env):
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    assert r.cmd(b"Y", b"COMPRESS DEFLATE") == [
        b"Y NO [COMPRESSIONACTIVE] DEFLATE is already active."]
    assert r.cmd(b"n", b"NOOP") == [b"n OK NOOP completed."]


def test_unknown_mechanism_and_state(env):
    r = ZRaw.tls(env)
    assert r.cmd(b"a", b"COMPRESS DEFLATE")[-1].startswith(b"a BAD")  # not authenticated
    r.login()
    assert r.cmd(b"b", b"COMPRESS LZW")[-1].startswith(b"b BAD")
    assert r.cmd(b"c", b"COMPRESS")[-1].startswith(b"c BAD")
    assert r.cmd(b"n", b"NOOP") == [b"n OK NOOP completed."]  # still uncompressed


def test_idle_push_is_flushed_at_once(env):
    """Z_SYNC_FLUSH per burst: an unsolicited EXISTS arrives without waiting for more."""
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    r.cmd(b"s", b"SELECT INBOX")
    r.idle()
    env.deliver(msg(subject="push"))
    _line, waited = r.wait_for(rb"^\* 1 EXISTS", 5)
    assert waited < 3
    assert r.done()[-1].endswith(b"OK IDLE terminated.")


def test_deflate_bomb_does_not_grow_memory(env):
    """64 MiB of one endless line, compressed to ~64 KiB: BYE [TOOBIG], memory flat."""
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        chunk = b"a" * (1 << 20)
        r.sock.settimeout(10)
        try:
            r.sock.sendall(bomb.compress(b"b NOOP "))
            for _ in range(64):
                r.sock.sendall(bomb.compress(chunk))
            r.sock.sendall(bomb.flush(zlib.Z_SYNC_FLUSH))
        except OSError:
            pass  # the server may hang up before the whole bomb is sent
        lines = []
        try:
            while True:
                lines.append(r.line(5))
        except (EOFError, OSError, TimeoutError):
            pass
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert lines and lines[0] == b"* BYE [TOOBIG] Command line too long.", lines
    assert peak < 4 * 1024 * 1024, f"server grew {peak} bytes for a deflate bomb"


def test_bomb_inside_literal_is_bounded(env):
    """A literal announced small but streamed as a bomb never expands past the framing."""
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        # LITERAL+ for a 200 KB command literal: over max_command_literals -> discarded
        data = b"x" * (200 * 1024)
        r.send(b'b SEARCH HEADER Subject {%d+}\r\n' % len(data) + data + b"\r\n")
        out = r.until(b"b")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out[-1].startswith(b"b NO [TOOBIG]") or out[-1].startswith(b"b BAD"), out
    assert peak < 2 * 1024 * 1024, peak
    assert r.cmd(b"n", b"NOOP") == [b"n OK NOOP completed."]


def test_corrupt_stream_says_bye(env):
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    r.sock.sendall(b"\xff\xff\xff\xff garbage that is not deflate")
    assert r.line(5) == b"* BYE [PARSE] Corrupt compressed data."
    assert r.at_eof(5)


def test_logout_closes_and_books_are_clean(env):
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    assert env.loop.call(lambda: len(env.factories[1].sessions)) == 1
    assert r.cmd(b"x", b"LOGOUT") == [b"* BYE Logging out.", b"x OK LOGOUT completed."]
    deadline = time.monotonic() + 8
    while env.loop.call(lambda: len(env.factories[1].sessions)):
        assert time.monotonic() < deadline, "compressed session still open after LOGOUT"
        time.sleep(0.05)
    assert r.at_eof(5)


def test_pipelined_after_compress_is_read_as_deflate(env):
    """Octets that arrive right behind the COMPRESS line are already compressed."""
    r = ZRaw.tls(env)
    r.login()
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    r.sock.sendall(b"Z COMPRESS DEFLATE\r\n" + z.compress(b"n NOOP\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
    assert r.line() == b"Z OK DEFLATE active."
    r.zin, r.zout = zlib.decompressobj(-15), z
    r.buf = r.zin.decompress(r.buf)
    assert r.until(b"n") == [b"n OK NOOP completed."]


def test_long_pipeline_expanding_past_the_buffer_is_all_answered(env):
    """More pipelined input than the read buffer holds, all in one compressed burst:
    what waits compressed is expanded as the framing drains, up to the last command."""
    r = ZRaw.tls(env)
    r.login()
    r.compress()
    n = 20000  # ~240 KB expanded: twice the read buffer; each line answered at once (BAD)
    # the first command runs while the buffer fills up; the rest is framed after it
    r.send(b"a NOOP\r\n" + b"* bad line\r\n" * n + b"z NOOP\r\n")
    out = r.until(b"z", timeout=10)
    assert out[0] == b"a OK NOOP completed." and out[-1] == b"z OK NOOP completed."
    assert len(out) == n + 2 and set(out[1:-1]) == {b"* BAD Invalid tag."}
