"""The gateway's SMTP refusal and fix-it mail (services.hybrid_gateway)."""

from __future__ import annotations

import pytest

from esam_mail.services.hybrid import AddressError, HybridInputError, parse_letter
from esam_mail.services.hybrid.gateway import build_fix_it_email, refusal_reply


def address_error() -> AddressError:
    with pytest.raises(AddressError) as info:
        parse_letter("Кому: Асқар\nИндекс: 12345\n\ntext")
    return info.value


def test_refusal_reply_is_550_560_ascii_one_line_naming_every_field() -> None:
    e = refusal_reply(address_error())
    assert (e.code, e.enhanced) == (550, "5.6.0")
    assert e.public.isascii() and "\n" not in e.public and "\r" not in e.public
    for field in ("street", "house", "locality", "postcode"):
        assert f"{field}:" in e.public


def test_refusal_reply_is_bounded() -> None:
    e = refusal_reply(HybridInputError("attachment 'x.pdf'", "ы" * 1000))
    assert len(e.public) < 400 and e.public.endswith("(details sent to your INBOX)")


def test_fix_it_mail_lists_problems_and_threads() -> None:
    msg = build_fix_it_email(address_error(), to_address="alice@esam.test", from_address="paper@esam.test",
                             subject="Хат", in_reply_to="<1@esam.test>")
    assert msg["To"] == "alice@esam.test" and "paper@esam.test" in msg["From"]
    assert msg["In-Reply-To"] == "<1@esam.test>" and msg["Auto-Submitted"] == "auto-replied"
    assert "Хат" in msg["Subject"]
    body = msg.get_content()
    assert "* postcode: '12345' is not a Kazakh postcode" in body
    assert "* street: missing" in body
