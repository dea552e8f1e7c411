"""Webmail decisions: what a folder page, a message and a sent message are.

The web front-end (``web/mail.py``) speaks HTTP only; everything it shows or writes is
decided here, on top of the same async mailbox service the IMAP front-end uses
(:mod:`esam_mail.services.mailflow.mailboxes`: every store call on a bounded pool, serialized per
folder, change notification), so a message opened on the web is ``\\Seen`` for IMAP at
once and a Thunderbird in IDLE hears about it.

* Listing: newest first, a bounded page (:data:`PAGE_SIZE`), header fields read from at
  most :data:`HEAD_LIMIT` bytes of each file (never the whole message).
* Reading: the MIME tree is parsed on the pool (a 50 MB message never blocks the loop);
  the HTML part is sanitised with nh3 (Ammonia: an allow-list of tags and attributes,
  no scripts, no styles, no event handlers) and remote images lose their ``src`` unless
  the reader asked for them; ``cid:`` images point at the message's own parts.
* Search: subject, sender and body text, newest first, bounded by messages scanned,
  bytes read and hits (:data:`SEARCH_SCAN`, :data:`SEARCH_BYTES`, :data:`SEARCH_HITS`),
  whatever the folder holds; it runs on the pool in the folder's queue.
* Sending: the message is built here (``From`` is the subscriber's own address) and goes
  through :class:`~esam_mail.services.mailflow.delivery.DeliveryService` exactly as port 587 hands
  it over: sender check, recipient routing (local delivery, the outbound queue for remote
  domains, quotas), the From-header check, DKIM signing; then a copy goes into Sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import itertools
import logging
import mimetypes
import re
import secrets
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any, cast

import nh3

from esam_mail.errors import BadFolderName, DeliveryError, NoSuchFolder, QuotaExceeded
from esam_mail.i18n import N_
from esam_mail.log import event, new_session_id
from esam_mail.services.auth import Principal
from esam_mail.services.mailflow.delivery import _ADDR, DeliveryService, Route, Transaction
from esam_mail.services.mailflow.mailboxes import MailboxService, MailboxView, MessageInfo
from esam_mail.services.mailflow.partstream import PartSource, locate

__all__ = [
    "PAGE_SIZE",
    "ComposeProblems",
    "FolderRow",
    "Listing",
    "Outgoing",
    "Part",
    "ReadMessage",
    "Row",
    "Upload",
    "Webmail",
    "safe_filename",
    "sanitize_html",
]

log = logging.getLogger(__name__)

PAGE_SIZE = 50
HEAD_LIMIT = 64 * 1024  # bytes of a file read for the list (headers only)
TEXT_LIMIT = 1024 * 1024  # characters of a text or HTML body shown
SEARCH_SCAN = 5000  # messages looked at by one search
SEARCH_BYTES = 256 * 1024 * 1024  # bytes read by one search
SEARCH_HITS = 200
QUERY_LIMIT = 200  # characters of a search query
ORDER = ("INBOX", "Drafts", "Sent", "Archive", "Junk", "Trash")

#: What the email package raises on a malformed message or header (no blind except).
_PARSE_ERRORS = (MessageError, ValueError, LookupError, IndexError, AttributeError, TypeError, AssertionError,
                 RecursionError)
MAX_PARTS = 500  # attachments listed for one message (a 6,000-part message lists the first 500)

_HEAD_PARSER = BytesHeaderParser(policy=policy.default)
_PARSER = BytesParser(policy=policy.default)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class FolderRow:
    name: str
    special_use: str | None
    messages: int
    unseen: int


@dataclass(frozen=True, slots=True)
class Row:
    uid: int
    sender: str
    subject: str
    date: dt.datetime
    size: int
    seen: bool
    flagged: bool
    answered: bool
    draft: bool
    attachments: bool


@dataclass(frozen=True, slots=True)
class Listing:
    folder: str
    rows: list[Row]
    total: int
    page: int
    pages: int
    query: str = ""
    scanned: int = 0  # search: messages looked at
    complete: bool = True  # search: False when a bound stopped it early


@dataclass(frozen=True, slots=True)
class Part:
    index: int  # position in the message's walk() order (stable for the same bytes)
    filename: str
    content_type: str
    size: int
    content_id: str | None
    inline: bool


@dataclass(slots=True)
class ReadMessage:
    folder: str
    uid: int
    flags: frozenset[str]
    sender: str
    to: str
    cc: str
    reply_to: str
    subject: str
    date: dt.datetime | None
    message_id: str
    references: str
    text: str | None
    html: str | None  # raw (unsanitised); see sanitize_html
    truncated: bool
    parts: list[Part]
    from_addresses: list[str] = field(default_factory=list)
    to_addresses: list[str] = field(default_factory=list)
    cc_addresses: list[str] = field(default_factory=list)
    reply_addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Outgoing:
    """What the compose form holds (texts as typed)."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    uploads: list[Upload] = field(default_factory=list)
    in_reply_to: str = ""
    references: str = ""
    # attachments kept from a draft or a forwarded message: (folder, uid, part indexes)
    source_folder: str = ""
    source_uid: int = 0
    keep: list[int] = field(default_factory=list)
    draft_uid: int = 0  # the draft this replaces (deleted once saved again or sent)
    answers: tuple[str, int] | None = None  # (folder, uid) to flag \Answered after sending


class ComposeProblems(Exception):
    """Problems of a compose form: field -> (English msgid, placeholders)."""

    def __init__(self, problems: dict[str, tuple[str, dict[str, Any]]]) -> None:
        super().__init__(", ".join(problems))
        self.problems = problems


# Texts of the problems (translated by the front-end in the ``webmail`` catalogue).
T_NO_RCPT = N_("Enter at least one recipient.")
T_BAD_ADDR = N_("This is not an e-mail address: {address}")
T_TOO_MANY = N_("Too many recipients: at most {limit}.")
T_TOO_BIG = N_("The message is too large: {size} MB, the limit is {limit} MB.")
T_NO_USER = N_("There is no such mailbox: {address}")
T_DISABLED = N_("This mailbox does not take mail now: {address}")
T_FULL = N_("The recipient's mailbox is full: {address}")
T_REFUSED = N_("This recipient was refused: {address}")
T_QUOTA = N_("Your mailbox is full: delete some messages and try again.")
T_LATER = N_("The message could not be sent now. Try again in a few minutes.")
T_SUBJECT_LONG = N_("The subject is too long.")
T_BAD_TEXT = N_("Remove the special characters.")


# --------------------------------------------------------------------------- helpers


def _header(msg: Message, name: str) -> str:
    """A header's decoded text ('' when absent or unreadable)."""
    try:
        value = msg.get(name)
    except _PARSE_ERRORS:  # a malformed header the policy cannot parse
        raw = msg.get_all(name, failobj=[""]) if hasattr(msg, "get_all") else [""]
        value = raw[0] if raw else ""
    if value is None:
        return ""
    text = str(value)
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text).strip()[:2000]


def _addresses(msg: Message, name: str) -> list[str]:
    try:
        values = msg.get_all(name, failobj=[])
    except _PARSE_ERRORS:
        return []
    return [a for _, a in email.utils.getaddresses([str(v) for v in values]) if a][:500]


def _date(msg: Message) -> dt.datetime | None:
    try:
        d = email.utils.parsedate_to_datetime(_header(msg, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d


def _display_sender(msg: Message) -> str:
    value = _header(msg, "From")
    pairs = email.utils.getaddresses([value])
    if pairs and (pairs[0][0] or pairs[0][1]):
        return pairs[0][0] or pairs[0][1]
    return value


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A file name a browser can save: no directories, no control characters, no
    leading dots, at most 150 characters (the extension kept)."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in '<>:"|?*')
    name = name.strip().lstrip(".").strip()
    if not name:
        return fallback
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 150 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else name[:150]
    return name


def _part_text(part: Message) -> str:
    if part.get_param("charset") is None:  # 8-bit text with no charset: UTF-8 is the likeliest
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload.decode("utf-8", "replace")
    try:
        content = cast(EmailMessage, part).get_content()
        if isinstance(content, str):
            return content
    except (LookupError, ValueError, AttributeError, AssertionError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


_BOUNDARY_LINE = re.compile(rb"\n--")
_BOUNDARY_PARAM = re.compile(rb"(?i)boundary\s*=")
MAX_BOUNDARIES = 2 * MAX_PARTS + 20  # boundary lines a message may have to be taken apart
MAX_NESTING = 50  # multipart declarations (a proxy for nesting depth)


def too_complex(raw: bytes) -> bool:
    """True for a message whose MIME structure the email package would take seconds to
    parse (thousands of parts, hundreds of nesting levels): counted in C, in milliseconds."""
    def more_than(pattern: re.Pattern[bytes], n: int) -> bool:  # stops at the (n+1)th match
        return next(itertools.islice(pattern.finditer(raw), n, None), None) is not None

    return more_than(_BOUNDARY_PARAM, MAX_NESTING) or more_than(_BOUNDARY_LINE, MAX_BOUNDARIES)


def parse_message(raw: bytes, folder: str, uid: int, flags: frozenset[str]) -> ReadMessage:
    """The parts of a message a reader sees (CPU work: call on the pool).  A message the
    email package cannot take apart in bounded time (hostile nesting, thousands of parts)
    is shown as its header fields and raw text, without attachments."""
    if not too_complex(raw):
        try:
            return _parse_message(raw, folder, uid, flags)
        except _PARSE_ERRORS:
            log.info("event=webmail.unparsable folder=%s uid=%d", folder, uid)
    head = _HEAD_PARSER.parsebytes(raw[:HEAD_LIMIT])
    return ReadMessage(
        folder=folder, uid=uid, flags=flags, sender=_header(head, "From"), to=_header(head, "To"), cc="",
        reply_to="", subject=_header(head, "Subject"), date=_date(head), message_id=_header(head, "Message-ID"),
        references="", text=raw[:TEXT_LIMIT].decode("utf-8", "replace"), html=None,
        truncated=len(raw) > TEXT_LIMIT, parts=[],
    )


def _parse_message(raw: bytes, folder: str, uid: int, flags: frozenset[str]) -> ReadMessage:
    msg = _PARSER.parsebytes(raw)
    parts = list(msg.walk())
    text_part = html_part = None
    try:
        text_part = msg.get_body(preferencelist=("plain",))
        html_part = msg.get_body(preferencelist=("html",))
    except _PARSE_ERRORS:
        text_part = html_part = None
    if text_part is None and html_part is None and not msg.is_multipart():
        text_part = msg
    truncated = False
    text = html = None
    if text_part is not None:
        text = _part_text(text_part)
        if len(text) > TEXT_LIMIT:
            text, truncated = text[:TEXT_LIMIT], True
    if html_part is not None:
        html = _part_text(html_part)
        if len(html) > TEXT_LIMIT:
            html, truncated = html[:TEXT_LIMIT], True
    bodies = {id(p) for p in (text_part, html_part) if p is not None}
    out: list[Part] = []
    for index, part in enumerate(parts):
        if len(out) >= MAX_PARTS:
            break
        if part.is_multipart() or id(part) in bodies:
            continue
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and part.is_multipart():
            continue
        disposition = (part.get_content_disposition() or "").lower()
        cid = _header(part, "Content-ID").strip("<> ") or None
        filename = part.get_filename() or ""
        if not filename:
            ext = mimetypes.guess_extension(ctype) or ".bin"
            filename = f"part-{index}{ext}"
        out.append(Part(index, safe_filename(filename), ctype, len(_payload(part)), cid,
                        disposition == "inline" and cid is not None))
    return ReadMessage(
        folder=folder, uid=uid, flags=flags, sender=_header(msg, "From"), to=_header(msg, "To"),
        cc=_header(msg, "Cc"), reply_to=_header(msg, "Reply-To"), subject=_header(msg, "Subject"),
        date=_date(msg), message_id=_header(msg, "Message-ID"), references=_header(msg, "References"),
        text=text, html=html, truncated=truncated, parts=out,
        from_addresses=_addresses(msg, "From"), to_addresses=_addresses(msg, "To"),
        cc_addresses=_addresses(msg, "Cc"), reply_addresses=_addresses(msg, "Reply-To"),
    )


def part_bytes(raw: bytes, index: int) -> tuple[bytes, str, str] | None:
    """(decoded content, content type, safe file name) of a leaf part, or None."""
    if index < 0 or too_complex(raw):
        return None
    try:
        return _part_bytes(_PARSER.parsebytes(raw), index)
    except _PARSE_ERRORS:
        return None


def _part_bytes(msg: Message, index: int) -> tuple[bytes, str, str] | None:
    for i, part in enumerate(msg.walk()):
        if i == index:
            if part.is_multipart():
                return None
            ctype = part.get_content_type()
            name = part.get_filename() or f"part-{index}{mimetypes.guess_extension(ctype) or '.bin'}"
            return _payload(part), ctype, safe_filename(name)
        if i > index:
            break
    return None


_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"}
_ATTRS = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}


def sanitize_html(html: str, *, images: bool, cid_url: Callable[[str], str | None]) -> tuple[str, int]:
    """(safe HTML, remote images blocked).

    nh3 keeps an allow-list of tags and attributes (no ``script``, ``style``, ``on*``,
    ``style=``, ``id``/``class``, forms or frames); links get ``rel="noopener
    noreferrer"``.  Remote images (http/https) keep their ``src`` only when ``images``;
    ``cid:`` images are pointed at the message's own part; ``data:`` is allowed for
    images only."""
    blocked = 0

    def attribute(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        low = value.strip().lower()
        if tag == "img" and attr == "src":
            if low.startswith("cid:"):
                return cid_url(value.strip()[4:])
            if low.startswith("data:image/"):
                return value
            if low.startswith(("http:", "https:", "//")):
                if images:
                    return value
                blocked += 1
                return None
            return None
        if low.startswith("data:"):
            return None
        return value

    clean = nh3.clean(
        html, tags=_TAGS, attributes=_ATTRS, url_schemes={"http", "https", "mailto", "cid", "data"},
        attribute_filter=attribute, strip_comments=True, link_rel="noopener noreferrer nofollow",
    )
    return clean, blocked


def html_to_text(html: str) -> str:
    """Plain text of an HTML body (for quoting and search)."""
    text = nh3.clean(re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", html), tags=set())
    return re.sub(r"\n{3,}", "\n\n", _unescape(text)).strip()


def _unescape(text: str) -> str:
    import html as htmllib

    return htmllib.unescape(text)


def _read_head(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(HEAD_LIMIT)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data[: end + 2] if end >= 0 else data


def _row(folder: Any, info: MessageInfo) -> Row:
    try:
        head = _read_head(folder.path_of(info.uid))
    except (KeyError, FileNotFoundError, OSError):
        head = b""
    msg = _HEAD_PARSER.parsebytes(head)
    ctype = (msg.get_content_type() or "").lower()
    return Row(
        uid=info.uid, sender=_display_sender(msg), subject=_header(msg, "Subject"),
        date=_date(msg) or info.internal_date, size=info.size, seen="\\Seen" in info.flags,
        flagged="\\Flagged" in info.flags, answered="\\Answered" in info.flags,
        draft="\\Draft" in info.flags, attachments=ctype == "multipart/mixed",
    )


class _RowCache:
    """Rows by (login, folder, uidvalidity, Maildir key); flags come fresh each time."""

    def __init__(self, capacity: int = 20000) -> None:
        self.capacity = capacity
        self._d: OrderedDict[tuple[str, str, int, str], Row] = OrderedDict()

    def get(self, key: tuple[str, str, int, str]) -> Row | None:
        row = self._d.get(key)
        if row is not None:
            self._d.move_to_end(key)
        return row

    def put(self, key: tuple[str, str, int, str], row: Row) -> None:
        self._d[key] = row
        while len(self._d) > self.capacity:
            self._d.popitem(last=False)


def _with_flags(row: Row, flags: frozenset[str]) -> Row:
    return Row(row.uid, row.sender, row.subject, row.date, row.size, "\\Seen" in flags, "\\Flagged" in flags,
               "\\Answered" in flags, "\\Draft" in flags, row.attachments)


def _matches(data: bytes, needle: str) -> bool:
    if too_complex(data):
        return needle in data[:TEXT_LIMIT].decode("utf-8", "replace").casefold()
    msg = _PARSER.parsebytes(data)
    hay = [_header(msg, "Subject"), _header(msg, "From")]
    try:
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
    except _PARSE_ERRORS:
        plain = html = None
    if plain is not None:
        hay.append(_part_text(plain)[:TEXT_LIMIT])
    elif html is not None:
        hay.append(html_to_text(_part_text(html)[:TEXT_LIMIT]))
    elif not msg.is_multipart():
        hay.append(_part_text(msg)[:TEXT_LIMIT])
    return any(needle in h.casefold() for h in hay)


# --------------------------------------------------------------------------- the service


class Webmail:
    """Webmail operations of one process (shared by every web session)."""

    def __init__(self, mailboxes: MailboxService, delivery: DeliveryService, *, max_message_size: int,
                 max_recipients: int, hostname: str) -> None:
        self.mailboxes = mailboxes
        self.delivery = delivery
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.hostname = hostname
        self._rows = _RowCache()

    # -- folders --------------------------------------------------------------------------

    async def folders(self, principal: Principal) -> list[FolderRow]:
        user = self.mailboxes.user(principal.login, principal.quota)
        infos = [f for f in await user.list_folders() if not f.noselect]
        statuses = await asyncio.gather(*(user.status(f.name) for f in infos), return_exceptions=True)
        rows = []
        for info, st in zip(infos, statuses, strict=True):
            if isinstance(st, BaseException):
                continue
            rows.append(FolderRow(info.name, info.special_use, st.messages, st.unseen))
        rank = {name: i for i, name in enumerate(ORDER)}
        rows.sort(key=lambda r: (rank.get(r.name, len(ORDER)), r.name.casefold()))
        return rows

    async def _open(self, principal: Principal, folder: str) -> MailboxView:
        """Raises NoSuchFolder (BadFolderName included)."""
        try:
            return await self.mailboxes.user(principal.login, principal.quota).open(folder)
        except BadFolderName:
            raise NoSuchFolder(folder) from None

    # -- listing and search ---------------------------------------------------------------

    async def listing(self, principal: Principal, folder: str, page: int = 1, size: int = PAGE_SIZE) -> Listing:
        view = await self._open(principal, folder)
        size = max(1, min(size, PAGE_SIZE))
        _, infos = await view.sync()
        total = len(infos)
        pages = max(1, -(-total // size))
        page = max(1, min(page, pages))
        newest = infos[::-1][(page - 1) * size: page * size]
        rows = await self._rows_of(view, newest)
        return Listing(folder, rows, total, page, pages)

    async def _rows_of(self, view: MailboxView, infos: Sequence[MessageInfo]) -> list[Row]:
        base = (view.login, view.name, view.uidvalidity)
        have: dict[int, Row] = {}
        want: list[MessageInfo] = []
        for m in infos:
            hit = self._rows.get((*base, m.key))
            if hit is not None:
                have[m.uid] = _with_flags(hit, m.flags)
            else:
                want.append(m)
        if want:
            fresh = await view.call(lambda f: [(m, _row(f, m)) for m in want])
            for m, row in fresh:
                self._rows.put((*base, m.key), row)
                have[m.uid] = row
        return [have[m.uid] for m in infos if m.uid in have]

    async def search(self, principal: Principal, folder: str, query: str) -> Listing:
        """Messages whose subject, sender or body text contains ``query`` (case-blind),
        newest first; bounded (see module docstring)."""
        needle = query.strip()[:QUERY_LIMIT].casefold()
        view = await self._open(principal, folder)
        _, infos = await view.sync()
        if not needle:
            return Listing(folder, [], 0, 1, 1, query=query)

        def scan(f: Any) -> tuple[list[MessageInfo], int, bool]:
            hits: list[MessageInfo] = []
            read = scanned = 0
            for m in reversed(infos):
                if scanned >= SEARCH_SCAN or read >= SEARCH_BYTES or len(hits) >= SEARCH_HITS:
                    return hits, scanned, False
                scanned += 1
                try:
                    data = f.read(m.uid)
                except (KeyError, FileNotFoundError):
                    continue
                read += len(data)
                try:
                    if _matches(data, needle):
                        hits.append(m)
                except _PARSE_ERRORS:  # one unparsable message must not end the search
                    log.debug("event=webmail.search_unparsable uid=%d", m.uid)
            return hits, scanned, True

        hits, scanned, complete = await view.call(scan)
        rows = await self._rows_of(view, hits)
        return Listing(folder, rows, len(rows), 1, 1, query=query, scanned=scanned, complete=complete)

    # -- reading ----------------------------------------------------------------------------

    async def read(self, principal: Principal, folder: str, uid: int, *, mark_seen: bool = True) -> ReadMessage | None:
        """The message (None when there is none with that UID here); marks it \\Seen."""
        view = await self._open(principal, folder)
        _, infos = await view.sync()
        info = next((m for m in infos if m.uid == uid), None)
        if info is None:
            return None

        def load(f: Any) -> ReadMessage | None:
            try:
                raw = f.read(uid)
            except (KeyError, FileNotFoundError):
                return None
            return parse_message(raw, folder, uid, info.flags)

        msg = await view.call(load)
        if msg is None:
            return None
        if mark_seen and "\\Seen" not in info.flags:
            flags = await view.store_flags([uid], ["\\Seen"], 1)
            msg.flags = flags.get(uid, msg.flags | {"\\Seen"})
        return msg

    async def part(self, principal: Principal, folder: str, uid: int, index: int) -> PartSource | None:
        """The attachment at ``index`` (as :func:`parse_message` numbers it), to be read with
        ``await``-ed :meth:`PartSource.chunks` (the caller closes it if it never reads)."""
        view = await self._open(principal, folder)
        await view.sync()

        def load(f: Any) -> PartSource | None:
            for attempt in range(3):
                try:
                    return locate(f.path_of(uid), index, parse=_PARSER.parsebytes, too_complex=too_complex,
                                  safe_filename=safe_filename, parse_errors=_PARSE_ERRORS)
                except KeyError:
                    return None
                except FileNotFoundError:  # renamed by a flag change meanwhile
                    if attempt == 2:
                        return None
                    f.sync()
            return None

        return await view.call(load)

    # -- moving and deleting ------------------------------------------------------------

    async def move(self, principal: Principal, folder: str, uids: Sequence[int], dest: str) -> int:
        """Move into ``dest``; returns how many moved.  Raises NoSuchFolder for either."""
        src = await self._open(principal, folder)
        target = await self._open(principal, dest)
        if src.name == target.name:
            return 0
        await src.sync()
        await target.sync()
        pairs, _ = await src.copy_to(list(uids), target, move=True)
        return len(pairs)

    async def delete(self, principal: Principal, folder: str, uids: Sequence[int]) -> int:
        """Into Trash; in Trash itself (or with no Trash), for good."""
        trash = "Trash"
        if folder != trash:
            try:
                return await self.move(principal, folder, uids, trash)
            except NoSuchFolder:
                await self._open(principal, folder)  # the source is what is missing: raise
        view = await self._open(principal, folder)
        await view.sync()
        await view.store_flags(list(uids), ["\\Deleted"], 1)
        return len(await view.expunge(list(uids)))

    async def empty_trash(self, principal: Principal) -> int:
        view = await self._open(principal, "Trash")
        _, infos = await view.sync()
        uids = [m.uid for m in infos]
        if not uids:
            return 0
        await view.store_flags(uids, ["\\Deleted"], 1)
        return len(await view.expunge(uids))

    # -- composing ----------------------------------------------------------------------

    def _recipients(self, out: Outgoing) -> tuple[dict[str, list[str]], dict[str, tuple[str, dict[str, Any]]]]:
        problems: dict[str, tuple[str, dict[str, Any]]] = {}
        found: dict[str, list[str]] = {}
        for name in ("to", "cc", "bcc"):
            value = getattr(out, name)
            if len(value) > 20000:
                problems[name] = (T_TOO_MANY, {"limit": self.max_recipients})
                continue
            addrs = []
            for display, addr in email.utils.getaddresses([value.replace(";", ",")]):
                if not addr and not display:
                    continue
                if not addr or not _ADDR.match(addr) or "\n" in addr or "\r" in addr:
                    problems.setdefault(name, (T_BAD_ADDR, {"address": (addr or display)[:200]}))
                    continue
                addrs.append(addr)
            found[name] = addrs
        total = sum(len(v) for v in found.values())
        if not problems and total == 0:
            problems["to"] = (T_NO_RCPT, {})
        elif total > self.max_recipients:
            problems["to"] = (T_TOO_MANY, {"limit": self.max_recipients})
        return found, problems

    async def _kept(self, principal: Principal, out: Outgoing) -> list[Upload]:
        """Attachments carried over from the draft or the forwarded message."""
        if not out.keep or not out.source_folder or out.source_uid <= 0:
            return []
        view = await self._open(principal, out.source_folder)
        await view.sync()
        keep = sorted(set(out.keep))[:100]

        def load(f: Any) -> list[Upload]:
            try:
                raw = f.read(out.source_uid)
            except (KeyError, FileNotFoundError):
                return []
            found = []
            for index in keep:
                got = part_bytes(raw, index)
                if got is not None:
                    found.append(Upload(got[2], got[1], got[0]))
            return found

        return await view.call(load)

    def build(self, principal: Principal, out: Outgoing, uploads: Iterable[Upload], *, display_name: str = "",
              bcc: bool = False) -> bytes:
        """The RFC 5322 message (CRLF), From = the subscriber's own address.  ``bcc``:
        keep the Bcc header (drafts only; never in what is sent)."""
        msg = EmailMessage(policy=policy.SMTP)
        local, _, domain = principal.address.partition("@")
        msg["From"] = Address(display_name[:200], local, domain) if display_name else principal.address
        for name in ("to", "cc") + (("bcc",) if bcc else ()):
            value = getattr(out, name).strip()
            if value:
                msg[name.capitalize() if name != "cc" else "Cc"] = value
        msg["Subject"] = out.subject
        msg["Date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC))
        msg["Message-ID"] = f"<{secrets.token_hex(12)}@{domain or self.hostname}>"
        if out.in_reply_to:
            msg["In-Reply-To"] = out.in_reply_to
        if out.references:
            msg["References"] = out.references
        msg["MIME-Version"] = "1.0"
        msg["User-Agent"] = "esam_mail webmail"
        body = out.body.replace("\r\n", "\n")
        msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
        for up in uploads:
            maintype, _, subtype = (up.content_type or "application/octet-stream").partition("/")
            if not re.fullmatch(r"[a-z0-9.+-]+", maintype or "") or not re.fullmatch(r"[a-z0-9.+-]+", subtype or ""):
                maintype, subtype = "application", "octet-stream"
            if maintype in ("multipart", "message", "text"):
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(up.data, maintype=maintype, subtype=subtype, filename=safe_filename(up.filename))
        return msg.as_bytes()

    def _check_text(self, out: Outgoing) -> dict[str, tuple[str, dict[str, Any]]]:
        problems: dict[str, tuple[str, dict[str, Any]]] = {}
        if len(out.subject) > 998:
            problems["subject"] = (T_SUBJECT_LONG, {})
        elif re.search(r"[\x00-\x1f\x7f]", out.subject):
            problems["subject"] = (T_BAD_TEXT, {})
        if "\x00" in out.body:
            problems["body"] = (T_BAD_TEXT, {})
        for name in ("to", "cc", "bcc"):  # a line break would start a header of its own
            if re.search(r"[\x00-\x1f\x7f]", getattr(out, name)):
                problems[name] = (T_BAD_TEXT, {})
        return problems

    def _size_problem(self, size: int) -> dict[str, tuple[str, dict[str, Any]]]:
        if size <= self.max_message_size:
            return {}
        mb = 1024 * 1024
        return {"attachments": (T_TOO_BIG, {"size": f"{size / mb:.1f}", "limit": f"{self.max_message_size / mb:.1f}"})}

    async def send(self, principal: Principal, out: Outgoing, *, display_name: str = "", peer: str = "",
                   tls: bool = False) -> str:
        """Check, build and submit the message as port 587 would; a copy goes to Sent.

        Returns the Message-ID.  Raises :class:`ComposeProblems` (nothing sent)."""
        found, problems = self._recipients(out)
        problems.update(self._check_text(out))  # after: a control character outranks the address
        estimate = len(out.body.encode()) + sum(len(u.data) for u in out.uploads) * 4 // 3
        routes: list[Route] = []
        seen: set[str] = set()
        for name in ("to", "cc", "bcc"):
            if name in problems:
                continue
            for addr in found.get(name, []):
                if addr.lower() in seen:
                    continue
                seen.add(addr.lower())
                try:
                    routes.append(await self.delivery.check_recipient(addr, principal=principal, size_hint=estimate))
                except DeliveryError as e:
                    text = {"5.1.1": T_NO_USER, "5.2.1": T_DISABLED, "4.2.1": T_DISABLED,
                            "4.2.2": T_FULL, "5.2.2": T_FULL}.get(e.enhanced, T_REFUSED)
                    problems.setdefault(name, (text, {"address": addr}))
        if problems:
            raise ComposeProblems(problems)
        uploads = [*await self._kept(principal, out), *out.uploads]
        data = await asyncio.to_thread(self.build, principal, out, uploads, display_name=display_name)
        problems = self._size_problem(len(data))
        if problems:
            raise ComposeProblems(problems)
        try:
            self.delivery.check_sender(principal.address, principal)
            self.delivery.check_from_header(data, principal)
        except DeliveryError:
            raise ComposeProblems({"to": (T_REFUSED, {"address": principal.address})}) from None
        tx = Transaction(mail_from=principal.address, routes=routes, data=data, principal=principal,
                         peer=peer or "webmail", helo="webmail", tls=tls, session=new_session_id())
        try:
            await self.delivery.deliver(tx)
        except DeliveryError as e:
            if e.enhanced == "5.2.2":
                raise ComposeProblems({"to": (T_FULL, {"address": ", ".join(r.address for r in routes)})}) from None
            raise ComposeProblems({"send": (T_LATER, {})}) from None
        message_id = _header(_HEAD_PARSER.parsebytes(data), "Message-ID")
        user = self.mailboxes.user(principal.login, principal.quota)
        try:
            await user.append("Sent", data, ["\\Seen"])
        except (QuotaExceeded, NoSuchFolder, BadFolderName):
            log.warning("event=webmail.sent_copy_failed user=%s", principal.login)
        if out.draft_uid:
            await self._drop_draft(principal, out.draft_uid)
        if out.answers is not None:
            try:
                view = await self._open(principal, out.answers[0])
                await view.sync()
                await view.store_flags([out.answers[1]], ["\\Answered"], 1)
            except NoSuchFolder:
                pass
        event(log, "webmail.sent", user=principal.login, rcpts=len(routes), size=len(data))
        return message_id

    async def save_draft(self, principal: Principal, out: Outgoing, *, display_name: str = "") -> int:
        """Store in Drafts (\\Draft \\Seen), replacing the draft it was opened from; the
        new UID.  Raises ComposeProblems (too large, quota)."""
        problems = self._check_text(out)
        if problems:
            raise ComposeProblems(problems)
        uploads = [*await self._kept(principal, out), *out.uploads]
        data = await asyncio.to_thread(self.build, principal, out, uploads, display_name=display_name, bcc=True)
        problems = self._size_problem(len(data))
        if problems:
            raise ComposeProblems(problems)
        user = self.mailboxes.user(principal.login, principal.quota)
        try:
            _, uid = await user.append("Drafts", data, ["\\Draft", "\\Seen"])
        except QuotaExceeded:
            raise ComposeProblems({"send": (T_QUOTA, {})}) from None
        if out.draft_uid and out.draft_uid != uid:
            await self._drop_draft(principal, out.draft_uid)
        return uid

    async def _drop_draft(self, principal: Principal, uid: int) -> None:
        view = await self._open(principal, "Drafts")
        await view.sync()
        await view.store_flags([uid], ["\\Deleted"], 1)
        await view.expunge([uid])

    # -- compose forms from a message ---------------------------------------------------------

    @staticmethod
    def reply_form(msg: ReadMessage, own: str, *, all_: bool, quote_header: str) -> Outgoing:
        to = msg.reply_addresses or msg.from_addresses
        cc: list[str] = []
        if all_:
            mine = own.lower()
            cc = [a for a in [*msg.to_addresses, *msg.cc_addresses] if a.lower() != mine and a not in to]
        subject = msg.subject if re.match(r"(?i)^re:", msg.subject) else f"Re: {msg.subject}"
        refs = " ".join(x for x in (msg.references, msg.message_id) if x)[-4000:]
        return Outgoing(to=", ".join(to), cc=", ".join(cc), subject=subject[:998],
                        body="\n\n" + quote_header + "\n" + _quote(msg), in_reply_to=msg.message_id,
                        references=refs, answers=(msg.folder, msg.uid))

    @staticmethod
    def forward_form(msg: ReadMessage, intro: str) -> Outgoing:
        subject = msg.subject if re.match(r"(?i)^fwd?:", msg.subject) else f"Fwd: {msg.subject}"
        body = _body_text(msg)
        return Outgoing(subject=subject[:998], body=f"\n\n{intro}\n{body}", source_folder=msg.folder,
                        source_uid=msg.uid, keep=[p.index for p in msg.parts])

    @staticmethod
    def draft_form(msg: ReadMessage, bcc: str = "") -> Outgoing:
        return Outgoing(to=msg.to, cc=msg.cc, bcc=bcc, subject=msg.subject, body=_body_text(msg).removesuffix("\n"),
                        source_folder=msg.folder, source_uid=msg.uid, keep=[p.index for p in msg.parts],
                        draft_uid=msg.uid)

    async def draft_bcc(self, principal: Principal, uid: int) -> str:
        view = await self._open(principal, "Drafts")
        await view.sync()

        def load(f: Any) -> str:
            try:
                head = _read_head(f.path_of(uid))
            except (KeyError, FileNotFoundError, OSError):
                return ""
            return _header(_HEAD_PARSER.parsebytes(head), "Bcc")

        return await view.call(load)


def _body_text(msg: ReadMessage) -> str:
    if msg.text is not None:
        return msg.text.replace("\r\n", "\n")
    if msg.html is not None:
        return html_to_text(msg.html)
    return ""


def _quote(msg: ReadMessage) -> str:
    return "\n".join("> " + line for line in _body_text(msg)[:200_000].splitlines())
