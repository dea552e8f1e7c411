"""The bulk DATA reader gives what aiosmtpd's line-by-line loop gave (RFC 5321 4.5.2)."""

from __future__ import annotations

import asyncio
import random

import pytest

from esam_mail.smtp.dotdata import TOO_LONG, TOO_MUCH, read_dot_data


def reference(stream: bytes, max_size: int | None, max_line: int) -> tuple[bytes | None, str | None, bytes]:
    """aiosmtpd 1.4's algorithm: lines up to CRLF, ``.CRLF`` ends, a leading dot is removed."""
    lines, pos, size, error = [], 0, 0, None
    while True:
        end = stream.index(b"\r\n", pos) + 2
        line = stream[pos:end]
        pos = end
        if line == b".\r\n":
            break
        size += len(line)
        if len(line) > max_line and error is None:
            error = TOO_LONG
        if max_size and size > max_size and error is None:
            error = TOO_MUCH
        lines.append(line[1:] if line.startswith(b".") else line)
    return (None if error else b"".join(lines)), error, stream[pos:]


def run(stream: bytes, cuts: list[int], max_size: int | None = None, max_line: int = 1001):
    async def go() -> tuple[bytes | None, str | None, bytes]:
        reader = asyncio.StreamReader(limit=1001)  # as aiosmtpd makes it

        async def feed() -> None:
            last = 0
            for c in [*sorted(cuts), len(stream)]:
                reader.feed_data(stream[last:c])
                last = c
                await asyncio.sleep(0)
            reader.feed_eof()

        task = asyncio.create_task(feed())
        body, err = await read_dot_data(reader, max_size=max_size, max_line=max_line)
        rest = await reader.read()
        await task
        return body, err, rest

    return asyncio.run(go())


CASES = [
    b".\r\n",  # empty body
    b"\r\n.\r\n",  # one empty line
    b"\r\n\r\n\r\n.\r\n",
    b"x\r\n.\r\n",
    b"..\r\n.\r\n",  # a line holding one dot
    b"...\r\n..x\r\n.\r\n",
    b".\rx\r\n.\r\n",
    b"a\r\n\r\n..\r\n\r\n.\r\n",
    b"Subject: hi\r\n\r\nbody\r\n..leading dot\r\nend\r\n.\r\n",
    b"bare\nlf\r\n.\r\n",
    b"\r\n" * 200 + b"x\r\n.\r\n",  # many empty lines first: the stepping part
]


@pytest.mark.parametrize("body", CASES)
def test_edge_cases_whole_and_byte_by_byte(body: bytes) -> None:
    stream = body + b"QUIT\r\n"
    expected = reference(stream, None, 1001)
    assert run(stream, []) == expected
    assert run(stream, list(range(1, len(stream)))) == expected


def test_random_bodies_in_random_pieces() -> None:
    rnd = random.Random(20)
    alphabet = [b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\r\n.", b"x" * 50]
    for _ in range(300):
        body = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 400)))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        body = body.replace(b"\r\n.\r\n", b"\r\n..\r\n")  # the terminator only at the end
        if body.startswith(b".\r\n"):
            body = b"." + body
        stream = body + b".\r\nNOOP\r\n"
        cuts = rnd.sample(range(1, len(stream)), min(len(stream) - 1, rnd.randrange(0, 12)))
        assert run(stream, cuts) == reference(stream, None, 1001), stream


def test_big_body_and_pipelined_command_stays() -> None:
    line = b"The quick brown fox jumps over the lazy dog 0123456789.=\r\n"
    stream = b".starts with a dot\r\n" + line * 20000 + b".\r\nMAIL FROM:<a@b.test>\r\n"
    body, err, rest = run(stream, [5, 4000, 70000, 500000])
    assert err is None and rest == b"MAIL FROM:<a@b.test>\r\n"
    assert body == b"starts with a dot\r\n" + line * 20000


def test_size_limit_reads_to_the_end_and_keeps_nothing() -> None:
    stream = b"y" * 80 + b"\r\n" + b"z\r\n" * 5000 + b".\r\nRSET\r\n"
    assert run(stream, [100, 3000], max_size=2048) == (None, TOO_MUCH, b"RSET\r\n")
    assert run(stream, [], max_size=len(stream)) == reference(stream, len(stream), 1001)


def test_long_line_is_refused_after_the_end() -> None:
    for n in (999, 1000, 5000):  # with CRLF: 1001 is allowed, 1002 is not
        stream = b"ok\r\n" + b"L" * n + b"\r\nok\r\n.\r\nQUIT\r\n"
        for cuts in ([], [3, 500, 1003], list(range(1, len(stream), 97))):
            assert run(stream, cuts) == reference(stream, None, 1001)
    assert run(b"L" * 5000 + b"\r\n.\r\n", [])[1] == TOO_LONG
