"""Fuzzing the MIME structure code behind BODYSTRUCTURE, BODY, ENVELOPE and BODY[n]
(esam_mail/imap/mime.py): deep nesting, broken boundaries, bad encodings and charsets,
huge header lines and plain garbage.  ``analyse`` never raises, section fetches raise
only SectionError (-> NO), the rendered structure is balanced, and every example runs
within the hypothesis deadline (no quadratic blow-up, no hang).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from esam_mail.imap import mime
from tests.slow.fuzz.budget import EXAMPLES, fuzz

CTE = st.sampled_from(["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uue", "BASE64 junk", "",
                       "=?utf-8?q?x?="])
CHARSET = st.sampled_from(["utf-8", "us-ascii", "koi8-r", "no-such-charset", "utf-7", "\"", "", "utf-16"])
HEADER_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["=?utf-8?b?0J/RgNC40LLQtdGC?=", "=?bogus?q?x?=", "=?utf-8?b?!!!?=", "(comment",
                     "\"unterminated", "a@b, <c@d>, group: e@f;, ,,", "<<>>", "@@@"]),
)
LEAF_BODY = st.one_of(st.binary(max_size=200), st.sampled_from([b"=ZZ=\r\n", b"!!!notbase64", b"=\r\n=4"]))


def _headers(ctype: str, cte: str, charset: str, extra: str) -> bytes:
    return (f"Content-Type: {ctype}; charset=\"{charset}\"; name*0*=utf-8''%ZZ; name*1=x\r\n"
            f"Content-Transfer-Encoding: {cte}\r\nContent-Disposition: attachment; filename={extra}\r\n"
            f"Subject: {extra}\r\nFrom: {extra}\r\nTo: {extra}\r\nDate: {extra}\r\n").encode(
        "utf-8", "surrogateescape")


@st.composite
def entity(draw: st.DrawFn, depth: int = 0) -> bytes:
    kind = draw(st.sampled_from(["leaf", "multipart", "rfc822"]) if depth < 40 else st.just("leaf"))
    head = _headers("text/plain", draw(CTE), draw(CHARSET), draw(HEADER_TEXT).replace("\r", " ").replace("\n", " "))
    if kind == "leaf":
        return head + b"\r\n" + draw(LEAF_BODY)
    if kind == "rfc822":
        return head.replace(b"text/plain", b"message/rfc822", 1) + b"\r\n" + draw(entity(depth + 1))
    boundary = draw(st.sampled_from(["b", "b" * 70, "", "\"q\"", "a b", "--", "=_x"])) + str(depth)
    parts = draw(st.lists(entity(depth + 1), max_size=3))
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    ending = draw(st.sampled_from([b"--" + boundary.encode() + b"--\r\n", b"", b"--" + boundary.encode(),
                                   b"--wrong--\r\n"]))
    return (head.replace(b"text/plain", f"multipart/mixed; boundary=\"{boundary}\"".encode(), 1) + b"\r\n"
            + draw(st.binary(max_size=20)) + body + ending)


def _balanced(b: bytes) -> bool:
    """Parentheses outside quoted strings and literals balance."""
    depth, i, n = 0, 0, len(b)
    while i < n:
        c = b[i]
        if c == 0x22:
            i += 1
            while i < n and b[i] != 0x22:
                i += 2 if b[i] == 0x5C else 1
        elif c == 0x7B and b.find(b"}\r\n", i) > i:
            j = b.find(b"}\r\n", i)
            if b[i + 1 : j].isdigit():
                i = j + 3 + int(b[i + 1 : j])
                continue
        elif c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def _check(data: bytes) -> None:
    meta = mime.analyse(data)
    for rendered in (meta.bodystructure, meta.body, meta.envelope):
        assert rendered.startswith(b"(") and _balanced(rendered), rendered[:200]
    assert mime.bodystructure(data) == meta.bodystructure
    assert mime.envelope(data) == meta.envelope
    for path in [(), (1,), (1, 1), (2, 1, 1), (1,) * 30]:
        for text in ("", "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            if text == "MIME" and not path:
                continue
            sec = mime.Section(path, text, (b"SUBJECT",) if text == "HEADER.FIELDS" else ())
            try:
                out = mime.section_bytes(data, meta.tree, sec)
            except mime.SectionError:
                continue
            assert isinstance(out, bytes) and len(out) <= len(data) + 2  # + the blank line
    mime.searchable_text(data, mime.parse_message(data), headers=True)


@fuzz(deadline_ms=1000)
@given(entity())
def test_generated_structures(data: bytes) -> None:
    _check(data)


@fuzz(deadline_ms=1000)
@given(st.binary(max_size=2000))
def test_garbage(data: bytes) -> None:
    _check(data)


@fuzz(deadline_ms=2000, examples=max(10, min(50, EXAMPLES)))
@given(st.integers(50, 400), st.sampled_from(["multipart", "rfc822", "unclosed"]))
def test_deep_nesting_is_bounded(depth: int, kind: str) -> None:
    inner = b"Content-Type: text/plain\r\n\r\ntext\r\n"
    for level in range(depth):
        if kind == "rfc822":
            inner = b"Content-Type: message/rfc822\r\n\r\nSubject: s\r\n" + inner
        else:
            b = b"x%d" % level
            close = b"" if kind == "unclosed" else b"\r\n--" + b + b"--\r\n"
            inner = b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n" + inner + close
    _check(inner)
    structure = mime.bodystructure(inner)
    assert structure.count(b"(") < 20 * mime.MAX_DEPTH + 50


@fuzz(deadline_ms=2000, examples=10)
@given(st.integers(10_000, 300_000), st.sampled_from([b"Subject", b"To", b"Content-Type", b"X-Long"]))
def test_huge_header_lines(size: int, name: bytes) -> None:
    value = (b"a@b.c, " * (size // 7)) if name == b"To" else b"x" * size
    data = name + b": " + value + b"\r\nFrom: f@g.h\r\n\r\nbody\r\n"
    _check(data)


@fuzz(deadline_ms=2000, examples=5)
@given(st.integers(1000, 6000))
def test_many_parts_are_capped(n: int) -> None:
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\np\r\n" for _ in range(n))
    data = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + b"--b--\r\n"
    _check(data)


@fuzz(deadline_ms=2000, examples=10)
@given(st.integers(10_000, 300_000),
       st.sampled_from([(b"Subject", b"(fwd)"), (b"Subject", b"Re: "), (b"Subject", b"[a]"),
                        (b"Subject", b"[fwd: "), (b"To", b"<a "), (b"To", b"g: "), (b"Cc", b"a."),
                        (b"References", b"<a@b> "), (b"Content-Type", b"; a*1=b")]))
def test_hostile_repeated_header_values(size: int, field: tuple[bytes, bytes]) -> None:
    """Repeated leaders, trailers, blobs, groups and parameters: linear (the base-subject
    loop was quadratic: 100 s for a 200 KB Subject of "(fwd)")."""
    name, unit = field
    value = (b"text/plain" if name == b"Content-Type" else b"") + unit * (size // len(unit)) + b"x"
    _check(name + b": " + value + b"\r\nFrom: f@g.h\r\n\r\nbody\r\n")
