"""Identity and field validation for mailbox registration (pure: no I/O).

Traced to the rules (seed ``000_254da2b4eae80a4d``):

* para. 13: users are identified by the IIN (individuals) and the BIN (legal
  entities).  :func:`validate_iin` / :func:`validate_bin` check the two-pass
  W1/W2 checksum **and** the structure (domain.md section 1); a number that
  only passes the checksum (``000000000000``) is rejected.
* para. 4 and 11: the mailbox address is unique and the login is chosen by the
  user.  :func:`normalize_username` fixes the syntax and refuses reserved role
  names (RFC 2142) so that nobody can register ``postmaster``.
* para. 6 and the appendix: the application carries phones, addresses and an
  identity document; the helpers below normalise those fields
  (:func:`normalize_phone`, :func:`normalize_postcode`, :func:`parse_date`,
  :func:`clean_person_name`, :func:`clean_text`).

Every failure raises :class:`esam_mail.errors.ValidationError` whose ``field``
names the input field (``iin``, ``bin``, ``mobile_phone``, ...) and whose
``message`` is a short, human sentence safe to show to the applicant.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from esam_mail.errors import ValidationError
from esam_mail.i18n import domain_message

M_ = domain_message("identity")

__all__ = [
    "BIN_ATTRIBUTES",
    "BIN_ENTITY_TYPES",
    "DEFAULT_RESERVED_NAMES",
    "W1",
    "W2",
    "ParsedBIN",
    "ParsedIIN",
    "Sex",
    "checksum_ok",
    "clean_person_name",
    "clean_text",
    "is_reserved_name",
    "kz_check_digit",
    "mask_number",
    "normalize_phone",
    "normalize_postcode",
    "normalize_username",
    "parse_date",
    "parse_sex",
    "validate_bin",
    "validate_iin",
]

Sex = Literal["M", "F"]

# --------------------------------------------------------------------------
# IIN / BIN (para. 13; algorithm: Government Decree No. 565, domain.md s. 1)
# --------------------------------------------------------------------------

#: First-pass weights for digits 1-11.
W1: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
#: Second-pass weights, used when the first pass gives 10.
W2: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)

_CENTURY = {"1": 1800, "2": 1800, "3": 1900, "4": 1900, "5": 2000, "6": 2000}

#: BIN digit 5: kind of registrant.
BIN_ENTITY_TYPES: dict[str, str] = {
    "4": "resident",
    "5": "non_resident",
    "6": "joint_ip",
}
#: BIN digit 6: head office / branch / representative office / peasant farm.
BIN_ATTRIBUTES: dict[str, str] = {
    "0": "head_office",
    "1": "branch",
    "2": "representative_office",
    "3": "peasant_farm",
}


def kz_check_digit(first11: str) -> int | None:
    """Return the check digit for the first 11 digits of an IIN/BIN.

    Two passes: weights :data:`W1`; if the sum mod 11 is 10, weights
    :data:`W2`; if that is 10 again, no valid number has this prefix and the
    result is ``None`` (e.g. ``90010130080``).
    """
    digits = [int(c) for c in first11]
    s = sum(a * b for a, b in zip(digits, W1, strict=True)) % 11
    if s == 10:
        s = sum(a * b for a, b in zip(digits, W2, strict=True)) % 11
    return None if s == 10 else s


def _is_12_ascii_digits(value: str) -> bool:
    return len(value) == 12 and value.isascii() and value.isdigit()


def checksum_ok(value: str) -> bool:
    """True if ``value`` is 12 ASCII digits with a correct check digit.

    Checksum only: ``000000000000`` passes here.  Use :func:`validate_iin` or
    :func:`validate_bin` for the structure as well.
    """
    if not isinstance(value, str) or not _is_12_ascii_digits(value):
        return False
    check = kz_check_digit(value[:11])
    return check is not None and check == int(value[11])


def _clean_number(value: object, field: str, what: str) -> str:
    """Strip blanks (people write ``900 101 300 811``) and check for 12 digits."""
    if not isinstance(value, str):
        raise ValidationError(field, M_("{what} must be given as text of 12 digits", what=what))
    text = re.sub(r"[ \t\u00a0]", "", value)
    if not text:
        raise ValidationError(field, M_("{what} is required", what=what))
    if not _is_12_ascii_digits(text):
        raise ValidationError(field, M_("{what} must be exactly 12 digits", what=what))
    return text


def _check_checksum(text: str, field: str, what: str) -> None:
    """Run after the structure checks, whose messages are more specific."""
    if kz_check_digit(text[:11]) is None:
        raise ValidationError(field, M_("{what} is not valid: no number can start with {prefix}", what=what, prefix=text[:11]))
    if not checksum_ok(text):
        raise ValidationError(field, M_("{what} is not valid: the check digit does not match", what=what))


@dataclass(frozen=True, slots=True)
class ParsedIIN:
    """A structurally valid IIN.

    ``birth_date`` and ``sex`` are ``None`` only for an IIN with an unusual
    7th digit accepted with ``allow_unusual_century=True``.
    """

    value: str
    birth_date: date | None
    sex: Sex | None
    serial: str


@dataclass(frozen=True, slots=True)
class ParsedBIN:
    """A structurally valid BIN (domain.md section 1)."""

    value: str
    registration_year: str  # YY, two digits; the century is not encoded
    registration_month: int  # 1-12
    entity_type: str  # one of BIN_ENTITY_TYPES values
    attribute: str  # one of BIN_ATTRIBUTES values
    serial: str


def validate_iin(
    value: object,
    *,
    field: str = "iin",
    allow_unusual_century: bool = False,
) -> ParsedIIN:
    """Validate an individual identification number (para. 13).

    Checks the 7th digit (1-6: century and sex, odd = male), that digits 1-6
    form a real birth date in that century, then the checksum (structure
    first: its messages are more specific).

    Args:
        value: the IIN as text; blanks are ignored.
        field: the field name used in errors.
        allow_unusual_century: accept a 7th digit of 0, 7, 8 or 9 (foreigners,
            very old records: domain.md section 7, doubt 2).  Month and day
            must still be plausible; birth date and sex are then ``None``.

    Raises:
        ValidationError: naming ``field``.
    """
    text = _clean_number(value, field, M_("IIN"))
    seventh = text[6]
    mm, dd = int(text[2:4]), int(text[4:6])
    if seventh in _CENTURY:
        try:
            born = date(_CENTURY[seventh] + int(text[:2]), mm, dd)
        except ValueError:
            raise ValidationError(
                field, M_("IIN is not valid: digits 1-6 are not a real birth date (YYMMDD)")
            ) from None
        _check_checksum(text, field, M_("IIN"))
        sex: Sex = "M" if int(seventh) % 2 else "F"
        return ParsedIIN(text, born, sex, text[7:11])
    if not allow_unusual_century:
        raise ValidationError(
            field, M_("IIN is not valid: the 7th digit (century and sex) must be 1 to 6")
        )
    try:
        date(2000, mm, dd)  # a leap year: 29 Feb is plausible for some century
    except ValueError:
        raise ValidationError(
            field, M_("IIN is not valid: digits 3-6 are not a real month and day")
        ) from None
    _check_checksum(text, field, M_("IIN"))
    return ParsedIIN(text, None, None, text[7:11])


def validate_bin(value: object, *, field: str = "bin") -> ParsedBIN:
    """Validate a business identification number (para. 13).

    Checks the registration month (01-12), the entity type (digit 5:
    4 resident, 5 non-resident, 6 joint IP), the attribute (digit 6: 0-3),
    then the checksum.

    Raises:
        ValidationError: naming ``field``.
    """
    text = _clean_number(value, field, M_("BIN"))
    month = int(text[2:4])
    if not 1 <= month <= 12:
        raise ValidationError(field, M_("BIN is not valid: digits 3-4 must be a month 01-12"))
    if text[4] not in BIN_ENTITY_TYPES:
        raise ValidationError(
            field, M_("BIN is not valid: the 5th digit (entity type) must be 4, 5 or 6")
        )
    if text[5] not in BIN_ATTRIBUTES:
        raise ValidationError(field, M_("BIN is not valid: the 6th digit (attribute) must be 0 to 3"))
    _check_checksum(text, field, M_("BIN"))
    return ParsedBIN(
        value=text,
        registration_year=text[:2],
        registration_month=month,
        entity_type=BIN_ENTITY_TYPES[text[4]],
        attribute=BIN_ATTRIBUTES[text[5]],
        serial=text[6:11],
    )


# --------------------------------------------------------------------------
# Phones (appendix: home / mobile / work phones)
# --------------------------------------------------------------------------

_PHONE_ALLOWED = re.compile(r"^\+?[0-9 ()\-.\u00a0]+$")


def normalize_phone(
    value: object, *, field: str = "mobile_phone", allow_foreign: bool = True
) -> str:
    """Normalise a phone number to E.164 (appendix: "Phones").

    Kazakhstan numbers become ``+7XXXXXXXXXX``.  Accepted spellings include
    ``8 (701) 123-45-67``, ``+7 701 1234567``, ``77011234567``, ``87011234567``
    and the bare 10-digit national number ``7011234567``.  With
    ``allow_foreign`` an international number written with ``+`` or ``00``
    (or the Kazakh international prefix ``8 10``) is kept as E.164 when it has
    8-15 digits.

    Raises:
        ValidationError: naming ``field``.
    """
    if not isinstance(value, str):
        raise ValidationError(field, M_("phone number must be given as text"))
    text = value.strip()
    if not text:
        raise ValidationError(field, M_("phone number is required"))
    if not _PHONE_ALLOWED.match(text) or text.count("+") > 1:
        raise ValidationError(
            field, M_("phone number may contain only digits, spaces, brackets, dashes and a leading +")
        )
    digits = re.sub(r"\D", "", text)
    international: str | None = None
    if text.startswith("+"):
        international = digits
    elif digits.startswith("00"):
        international = digits[2:]
    elif digits.startswith("810") and len(digits) > 11:
        international = digits[3:]
    elif len(digits) == 11 and digits[0] in "78":
        international = "7" + digits[1:]
    elif len(digits) == 10:
        international = "7" + digits
    if international is None:
        raise ValidationError(
            field, M_("phone number is not valid: expected e.g. +7 701 123 45 67 or 8 701 123 45 67")
        )
    if international.startswith("7"):
        national = international[1:]
        if len(national) != 10 or national[0] not in "3456789":
            raise ValidationError(
                field,
                M_("phone number is not valid: +7 must be followed by 10 digits (+7 701 123 45 67)"),
            )
        return "+" + international
    if not allow_foreign:
        raise ValidationError(field, M_("phone number must be a Kazakhstan number (+7)"))
    if not 8 <= len(international) <= 15 or international[0] == "0":
        raise ValidationError(
            field, M_("phone number is not valid: an international number has 8-15 digits")
        )
    return "+" + international


# --------------------------------------------------------------------------
# Postcodes (domain.md section 5)
# --------------------------------------------------------------------------

_POSTCODE = re.compile(r"^(?:\d{6}|[A-Z]\d{2}[A-Z0-9]{4})$")


def normalize_postcode(value: object, *, field: str = "postcode") -> str:
    """Validate a Kazakh postcode and return it upper-case without blanks.

    Two systems are in use: the legacy 6 digits (``050012``) and the
    7-character building code since 2015 (``A01P3K4``).
    """
    if not isinstance(value, str):
        raise ValidationError(field, M_("postcode must be given as text"))
    text = re.sub(r"\s", "", value).upper()
    if not text:
        raise ValidationError(field, M_("postcode is required"))
    if not text.isascii() or not _POSTCODE.match(text):
        raise ValidationError(
            field, M_("postcode is not valid: expected 6 digits (050012) or 7 characters (A01P3K4)")
        )
    return text


# --------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(
    value: object,
    *,
    field: str,
    not_future: bool = False,
    today: date | None = None,
    earliest: date | None = None,
) -> date:
    """Parse an ISO ``YYYY-MM-DD`` date (or accept a :class:`datetime.date`).

    Args:
        value: the text, or a ``date`` (a ``datetime`` is refused).
        field: the field name used in errors.
        not_future: refuse dates after ``today`` (document issue date,
            registration date, birth date).
        today: "today" for the check; defaults to :meth:`date.today`.
        earliest: refuse dates before this one (default: 1800-01-01).
    """
    if isinstance(value, date) and type(value) is date:
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValidationError(field, M_("date is required"))
        if not _ISO_DATE.match(text):
            raise ValidationError(field, M_("date must be written as YYYY-MM-DD"))
        try:
            result = date.fromisoformat(text)
        except ValueError:
            raise ValidationError(field, M_("{date} is not a real calendar date", date=text)) from None
    else:
        raise ValidationError(field, M_("date must be written as YYYY-MM-DD"))
    floor = earliest or date(1800, 1, 1)
    if result < floor:
        raise ValidationError(field, M_("date must not be before {date}", date=floor.isoformat()))
    if not_future and result > (today or date.today()):
        raise ValidationError(field, M_("date must not be in the future"))
    return result


def parse_sex(value: object, *, field: str = "sex") -> Sex:
    """Accept ``M``/``F`` (also ``male``/``female``, any case)."""
    if isinstance(value, str):
        text = value.strip().casefold()
        if text in ("m", "male"):
            return "M"
        if text in ("f", "female"):
            return "F"
    raise ValidationError(field, M_("sex must be M or F"))


# --------------------------------------------------------------------------
# Mailbox user names (para. 4, 11; RFC 2142 role names)
# --------------------------------------------------------------------------

#: Names nobody may register: RFC 2142 role mailboxes plus common system,
#: role and look-alike names.  The operator adds its own list on top.
DEFAULT_RESERVED_NAMES: frozenset[str] = frozenset(
    {
        # RFC 2142 section 3-5
        "info", "marketing", "sales", "support", "abuse", "noc", "security",
        "postmaster", "hostmaster", "usenet", "news", "webmaster", "www",
        "uucp", "ftp",
        # system and MTA names
        "mailer-daemon", "root", "admin", "administrator", "daemon", "nobody",
        "system", "operator", "bin", "sys", "mail", "smtp", "imap", "pop",
        "pop3", "mx", "dns", "ns", "ssl-admin", "list", "lists", "listmaster",
        "majordomo", "bounce", "bounces", "noreply", "no-reply", "donotreply",
        "do-not-reply", "undisclosed-recipients", "autoconfig", "autodiscover",
        "dmarc", "dkim", "tls-rpt", "mta-sts",
        # operator roles
        "help", "helpdesk", "office", "billing", "privacy", "legal", "press",
        "contact", "service", "registration", "registry", "hybrid", "esam",
        "kazpost", "post", "test",
    }
)  # fmt: skip

_USERNAME = re.compile(r"^[a-z0-9._-]{3,64}$")


def _squash(name: str) -> str:
    """``mailer.daemon``, ``post-master`` and ``post_master`` look alike."""
    return re.sub(r"[._-]", "", name)


def mask_number(number: str | None) -> str:
    """An IIN/BIN as staff screens show it: only the last four digits (``********0007``)."""
    if not number:
        return ""
    return "*" * max(len(number) - 4, 0) + number[-4:]


def is_reserved_name(name: str, extra: Iterable[str] = ()) -> bool:
    """True if ``name`` (already normalised) is a reserved name.

    Compares exactly and with ``.``, ``-`` and ``_`` removed, so look-alikes
    such as ``post.master`` are reserved too.  An entry with ``*``, ``?`` or
    ``[`` is a shell-style pattern (``*akimat*``, ``gov[._-]*``) matched against
    the name and against the name with ``.``, ``-`` and ``_`` removed.
    """
    squashed = _squash(name)
    for reserved in (*DEFAULT_RESERVED_NAMES, *extra):
        r = reserved.strip().lower()
        if not r:
            continue
        if any(c in r for c in "*?["):
            if fnmatch.fnmatchcase(name, r) or fnmatch.fnmatchcase(squashed, r):
                return True
        elif name == r or squashed == _squash(r):
            return True
    return False


_TWELVE_DIGITS = re.compile(r"\d{12}")


def normalize_username(
    value: object,
    *,
    field: str = "username",
    reserved: Iterable[str] = (),
) -> str:
    """Normalise and check the requested mailbox user name (para. 4, 11).

    Rules: surrounding blanks are removed and the name is lower-cased; only
    ASCII letters, digits, ``.``, ``-`` and ``_``; 3-64 characters; starts and
    ends with a letter or digit (so no leading/trailing dot, and no name that
    looks like a command-line option); no ``..``; not a reserved name
    (:data:`DEFAULT_RESERVED_NAMES` plus ``reserved``).
    """
    if not isinstance(value, str):
        raise ValidationError(field, M_("user name must be given as text"))
    text = value.strip()
    if not text:
        raise ValidationError(field, M_("user name is required"))
    # Before lower(): "\u212a".lower() is an ASCII "k".
    if not text.isascii():
        raise ValidationError(
            field, M_("user name may contain only Latin letters a-z, digits, '.', '-' and '_'")
        )
    name = text.lower()
    if not 3 <= len(name) <= 64:
        raise ValidationError(field, M_("user name must be 3 to 64 characters long"))
    if not _USERNAME.match(name):
        raise ValidationError(
            field, M_("user name may contain only Latin letters a-z, digits, '.', '-' and '_'")
        )
    if not (name[0].isalnum() and name[-1].isalnum()):
        raise ValidationError(field, M_("user name must start and end with a letter or digit"))
    if ".." in name:
        raise ValidationError(field, M_("user name must not contain two dots in a row"))
    if _squash(name).isdigit():
        raise ValidationError(
            field, M_("user name must contain a letter: a name of digits only looks like an IIN/BIN or a phone number")
        )
    if _TWELVE_DIGITS.search(_squash(name)):
        raise ValidationError(field, M_("user name must not contain 12 digits in a row: it would look like an IIN/BIN"))
    if is_reserved_name(name, reserved):
        raise ValidationError(field, M_("user name '{name}' is reserved and cannot be registered", name=name))
    return name


# --------------------------------------------------------------------------
# Names and free text (appendix: full name, issuer, address lines)
# --------------------------------------------------------------------------

_NAME_PUNCT = frozenset(" -'’.")


def _nfc_collapse(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def clean_text(value: object, *, field: str, max_len: int = 200, what: str = M_("value")) -> str:
    """NFC-normalise, collapse blanks and refuse control characters.

    Used for address lines, document issuers and entity names, which may mix
    Kazakh, Russian and Latin letters, digits and punctuation (``12/3``,
    ``ТОО «Ромашка»``).
    """
    if not isinstance(value, str):
        raise ValidationError(field, M_("{what} must be given as text", what=what))
    text = _nfc_collapse(value)
    if not text:
        raise ValidationError(field, M_("{what} is required", what=what))
    if len(text) > max_len:
        raise ValidationError(field, M_("{what} must be at most {max_len} characters long", what=what, max_len=max_len))
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in text):
        raise ValidationError(field, M_("{what} contains control or unassigned characters", what=what))
    return text


def clean_person_name(value: object, *, field: str, max_len: int = 100, what: str = M_("name")) -> str:
    """Clean a surname, given name or patronymic.

    Letters of any script (Kazakh ә ғ қ ң ө ұ ү һ і are kept as they are),
    combining marks, blanks, hyphens, apostrophes and dots; no digits.
    """
    text = clean_text(value, field=field, max_len=max_len, what=what)
    for c in text:
        if c in _NAME_PUNCT:
            continue
        if unicodedata.category(c)[0] not in ("L", "M"):
            raise ValidationError(
                field, M_("{what} may contain only letters, spaces, hyphens and apostrophes", what=what)
            )
    if not any(unicodedata.category(c)[0] == "L" for c in text):
        raise ValidationError(field, M_("{what} must contain letters", what=what))
    return text
