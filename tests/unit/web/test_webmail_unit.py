"""Webmail decisions without sockets: HTML sanitising, file names, message parsing."""

from __future__ import annotations

from email.message import EmailMessage

from esam_mail.services.mailflow.webmail import parse_message, part_bytes, safe_filename, sanitize_html
from esam_mail.web.mail import content_disposition


def test_sanitize_drops_active_content_and_remote_images() -> None:
    html = ('<p onclick="x()" style="color:red" class="c" id="i">hi</p><script>alert(1)</script>'
            '<iframe src="https://e/"></iframe><form action="https://e/"><input name=p></form>'
            '<img src="https://t.example/p.gif"><img src="//t.example/q.gif"><img src="cid:a@b">'
            '<img src="data:image/png;base64,AAAA"><a href="data:text/html,x">d</a><a href="javascript:x">j</a>')
    clean, blocked = sanitize_html(html, images=False, cid_url=lambda cid: f"/part/{cid}")
    for bad in ("onclick", "style=", "class=", "id=", "<script", "<iframe", "<form", "<input",
                "t.example", "data:text", "javascript:"):
        assert bad not in clean, bad
    assert blocked == 2
    assert 'src="/part/a@b"' in clean and 'src="data:image/png;base64,AAAA"' in clean
    shown, blocked = sanitize_html(html, images=True, cid_url=lambda cid: None)
    assert 'src="https://t.example/p.gif"' in shown and blocked == 0 and "<script" not in shown


def test_safe_filename_and_disposition() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\x\\..\\evil.exe") == "evil.exe"
    assert safe_filename("..hidden") == "hidden"
    assert safe_filename("a\r\nb\x00c.txt") == "abc.txt"
    assert safe_filename("") == "attachment" and safe_filename("../..") == "attachment"
    long = safe_filename("x" * 400 + ".pdf")
    assert len(long) == 150 and long.endswith(".pdf")
    cd = content_disposition("attachment", 'есеп "2026".pdf')
    assert cd == ("attachment; filename=\" 2026.pdf\"; "
                  "filename*=UTF-8''%D0%B5%D1%81%D0%B5%D0%BF%20%222026%22.pdf")


def test_parse_message_parts_and_indexes() -> None:
    msg = EmailMessage()
    msg["From"] = "=?utf-8?b?0JTQsNC90LA=?= <d@x.test>"
    msg["Subject"] = "=?utf-8?q?=D0=A1=D3=99=D0=BB=D0=B5=D0=BC?="
    msg.set_content("text body")
    msg.add_alternative("<b>html</b>", subtype="html")
    msg.add_attachment(b"PDF", maintype="application", subtype="pdf", filename="a.pdf")
    raw = msg.as_bytes()
    parsed = parse_message(raw, "INBOX", 7, frozenset())
    assert parsed.subject == "Сәлем" and parsed.sender == "Дана <d@x.test>"
    assert parsed.text == "text body\n" and parsed.html == "<b>html</b>\n"
    assert [p.filename for p in parsed.parts] == ["a.pdf"]
    index = parsed.parts[0].index
    assert part_bytes(raw, index) == (b"PDF", "application/pdf", "a.pdf")
    assert part_bytes(raw, 0) is None  # the multipart container is not a part to download
    assert part_bytes(raw, 999) is None and part_bytes(raw, -1) is None


def _webmail_msgids() -> set[str]:
    """``t("...")`` in the webmail templates, ``W_``/``N_``/``t`` in its modules."""
    import ast

    from jinja2 import Environment

    from esam_mail.web.templating import TEMPLATE_DIR

    found: set[str] = set()
    env = Environment(extensions=["jinja2.ext.i18n"])
    for path in [*TEMPLATE_DIR.glob("mail_*.html"), TEMPLATE_DIR / "_mail_side.html"]:
        for _, _, msg in env.extract_translations(path.read_text(), gettext_functions=("t",)):
            found.update(m for m in (msg if isinstance(msg, tuple) else (msg,)) if m)
    from esam_mail.services.mailflow import webmail as svc
    from esam_mail.web import mail as web

    for module in (svc, web):
        for node in ast.walk(ast.parse(open(module.__file__, encoding="utf-8").read())):  # noqa: SIM115
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("t", "W_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value)
    return found


def test_every_webmail_text_is_in_the_catalogues() -> None:
    from babel.messages.pofile import read_po

    from esam_mail import i18n

    wanted = _webmail_msgids()
    assert {"Inbox", "Reply", "This message has no such attachment.", "Enter at least one recipient."} <= wanted
    for lang in ("kk", "ru"):
        with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "webmail.po").open("rb") as fh:
            have = {m.id for m in read_po(fh) if m.id}
        assert not sorted(wanted - have), f"{lang}/webmail.po lacks {sorted(wanted - have)}"


def test_too_complex_is_cheap_and_ordinary_mail_is_not() -> None:
    import time

    from esam_mail.services.mailflow.webmail import MAX_PARTS, too_complex

    msg = EmailMessage()
    msg["Subject"] = "ok"
    msg.set_content("x")
    for i in range(20):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{i}.bin")
    assert not too_complex(msg.as_bytes())
    many = b"Content-Type: multipart/mixed; boundary=P\r\n\r\n" + b"\r\n--P\r\n\r\nx" * (3 * MAX_PARTS)
    deep = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(100))
    started = time.monotonic()
    assert too_complex(many) and too_complex(deep) and too_complex(many * 500)
    assert time.monotonic() - started < 1
    parsed = parse_message(deep, "INBOX", 1, frozenset())
    assert parsed.parts == [] and parsed.text is not None
