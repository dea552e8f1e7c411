"""An attachment read block by block is byte-identical to the email package's decoding.

Each message is written to a file; every leaf part is located and read through
:meth:`PartSource.chunks` and compared with ``get_payload(decode=True)`` of the same
part in a full parse (what the webmail served before), with the block size made tiny
so that blocks split base64 quanta, QP escapes and CRLF pairs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import quopri
import random
from email.message import EmailMessage
from pathlib import Path

import pytest

from esam_mail.services.mailflow import partstream
from esam_mail.services.mailflow.partstream import PartSource, locate
from esam_mail.services.mailflow.webmail import _PARSE_ERRORS, _PARSER, _payload, safe_filename, too_complex


def _locate(path: Path, index: int) -> PartSource | None:
    return locate(str(path), index, parse=_PARSER.parsebytes, too_complex=too_complex,
                  safe_filename=safe_filename, parse_errors=_PARSE_ERRORS)


async def _read(src: PartSource) -> bytes:
    return b"".join([c async for c in src.chunks()])


def _expected(raw: bytes) -> list[tuple[int, bytes]]:
    msg = _PARSER.parsebytes(raw)
    return [(i, _payload(p)) for i, p in enumerate(msg.walk()) if not p.is_multipart()]


def _multipart(*parts: tuple[str, str, bytes], crlf: bool = False) -> bytes:
    """Hand-written MIME (the encodings exactly as given, dirty ones included)."""
    nl = "\r\n" if crlf else "\n"
    out = [f"From: a@b.test{nl}Subject: t{nl}MIME-Version: 1.0{nl}"
           f'Content-Type: multipart/mixed; boundary="BB"{nl}{nl}preamble{nl}']
    for ctype, cte, body in parts:
        out.append(f"--BB{nl}Content-Type: {ctype}{nl}")
        if cte:
            out.append(f"Content-Transfer-Encoding: {cte}{nl}")
        out.append(f'Content-Disposition: attachment; filename="f.bin"{nl}{nl}')
        out.append(body.decode("latin-1"))
        out.append(nl)
    out.append(f"--BB--{nl}epilogue{nl}")
    return "".join(out).encode("latin-1")


def _b64_lines(data: bytes, nl: bytes = b"\n", width: int = 76) -> bytes:
    enc = base64.b64encode(data)
    return nl.join(enc[i:i + width] for i in range(0, len(enc), width))


def _cases() -> dict[str, bytes]:
    rnd = random.Random(7)
    blob = bytes(rnd.getrandbits(8) for _ in range(50_000))
    text = ("Сәлем, әлем! = soft\t \n" * 800).encode()
    long_qp = b"=41" * 20_000 + b"=\nend=3D\n"  # a single long line of escapes
    em = EmailMessage()
    em["Subject"] = "built"
    em.set_content("hello\n")
    em.add_attachment(blob, maintype="application", subtype="pdf", filename="отчёт.pdf")
    em.add_attachment("ünïcode text\n" * 100, subtype="plain", cte="quoted-printable")
    em.add_attachment("8bit текст\n" * 100, subtype="plain", cte="8bit")
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("inner body\n")
    inner.add_attachment(blob[:999], maintype="image", subtype="png", filename="x.png")
    em.add_attachment(inner)
    return {
        "email_package": em.as_bytes(),
        "base64_lf": _multipart(("application/pdf", "base64", _b64_lines(blob))),
        "base64_crlf": _multipart(("application/pdf", "base64", _b64_lines(blob, b"\r\n")), crlf=True),
        "base64_one_line": _multipart(("application/pdf", "base64", base64.b64encode(blob))),
        "base64_padding": _multipart(("a/b", "base64", _b64_lines(blob[:1000])), ("a/b", "base64",
                                                                               _b64_lines(blob[:1001]))),
        "base64_dirty": _multipart(("a/b", "base64", _b64_lines(blob[:3000]).replace(b"\n", b" \n!"))),
        "base64_no_padding": _multipart(("a/b", "BASE64", base64.b64encode(blob[:1000]).rstrip(b"="))),
        "base64_padding_inside": _multipart(("a/b", "base64", base64.b64encode(b"ab") + base64.b64encode(b"cd"))),
        "qp": _multipart(("text/plain", "quoted-printable", quopri.encodestring(text))),
        "qp_crlf": _multipart(("text/plain", "quoted-printable",
                               quopri.encodestring(text).replace(b"\n", b"\r\n")), crlf=True),
        "qp_long_line": _multipart(("text/plain", "quoted-printable", long_qp)),
        "identity": _multipart(("text/plain", "7bit", b"plain text\n" * 5000), ("a/b", "", b"x" * 70_000)),
        "eight_bit": _multipart(("text/plain; charset=utf-8", "8bit", "қазақша\n".encode() * 3000)),
        "uuencode": _multipart(("a/b", "x-uuencode", b"begin 644 f\n#86)C\n`\nend\n")),
        "unknown_cte": _multipart(("a/b", "x-weird", b"as is\n")),
        "single_part": b"Subject: s\nContent-Transfer-Encoding: base64\n\n" + _b64_lines(blob[:5000]) + b"\n",
        "duplicate_bodies": _multipart(("a/b", "base64", _b64_lines(blob[:900])),
                                       ("c/d", "quoted-printable", _b64_lines(blob[:900]))),
    }


@pytest.mark.parametrize("block", [7, 4096, partstream.BLOCK])
@pytest.mark.parametrize("name", sorted(_cases()))
def test_every_part_reads_back_exactly_as_the_email_package_decodes_it(
        name: str, block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partstream, "BLOCK", block)
    raw = _cases()[name]
    path = tmp_path / "m"
    path.write_bytes(raw)
    expected = _expected(raw)
    assert expected
    for index, data in expected:
        src = _locate(path, index)
        assert src is not None, index
        got = asyncio.run(_read(src))
        assert got == data, (name, index, len(got), len(data))
        if src.size is not None:
            assert src.size == len(data)


def test_large_clean_parts_are_streamed_from_the_file_not_held(tmp_path: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    raw = _multipart(("application/pdf", "base64", _b64_lines(blob, b"\r\n")), crlf=True)
    path = tmp_path / "m"
    path.write_bytes(raw)
    src = _locate(path, 1)
    assert src is not None
    assert src.data is None and src.fd >= 0  # read from the file as the client reads
    assert src.size == len(blob)
    assert asyncio.run(_read(src)) == blob
    assert src.fd == -1  # closed at the end


def test_no_such_part_and_containers_are_none(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(_cases()["base64_lf"])
    assert _locate(path, 0) is None  # the multipart container
    assert _locate(path, 99) is None
    assert _locate(path, -1) is None


def test_closing_while_a_read_is_in_flight_waits_for_the_read(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(_cases()["base64_lf"])
    src = _locate(path, 1)
    assert src is not None
    fd = src.fd
    src._reading = True  # a worker thread is in pread()
    src.close()
    os.fstat(fd)  # still open
    src._reading = False
    with pytest.raises(OSError):
        src._read_decode(partstream._Decoder(), 0, 1)
    src._release()
    with pytest.raises(OSError):
        os.fstat(fd)
