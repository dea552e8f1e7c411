"""RFC 4469 CATENATE: an APPEND message built from TEXT literals and IMAP URLs.

``APPEND box [flags] [date] CATENATE (TEXT {n} URL "/Drafts;UIDVALIDITY=9/;UID=20/;SECTION=1")``
(any number of such messages, with plain ones, under MULTIAPPEND; LITERAL+ literals are
framed like any APPEND literal).  A URL (RFC 5092) names a message, or a part of one
(``;SECTION=``, ``;PARTIAL=``), in the authenticated user's own mailboxes:
``imap://user[;AUTH=*]@host[:port]/box[;UIDVALIDITY=n]/;UID=m[/;SECTION=x][/;PARTIAL=o.l]``,
or the same from ``/box...`` on.  The user part must be the session's login or address;
anything else (another user, anonymous, URLAUTH, a mailbox that is not there, a changed
UIDVALIDITY, a missing message or part) is ``NO [BADURL url]``.

:func:`build` resolves the parts in order (each URL read and cut on the mailbox pool)
and joins them: in RAM while small, else into a :class:`Spool` in the user's store as
they come (a spooled TEXT literal is copied file to file), so that the existing APPEND
stores it with a rename.  The total is capped by the APPEND message cap (``TooBig``).
Nothing is stored until every part of every message of the command is resolved.

Pure apart from the mailbox-pool calls (no Twisted).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from esam_mail import errors
from esam_mail.services.mailflow.mailboxes import MailboxView, Spool, UserMailboxes

from . import mime
from .parser import MAX_NUMBER, Atom, LimitExceeded, ParseError, String, Token, parse_section

MAX_PARTS = 256  # TEXT and URL parts of one message (TEXT literals are also capped as literals)
SPOOL_BACKLOG = 1024 * 1024  # bytes fed to the output spool before waiting for the disk

_PATH = re.compile(
    r"/(?P<box>[^;]+?)(?:;UIDVALIDITY=(?P<uv>[0-9]{1,10}))?/;UID=(?P<uid>[0-9]{1,10})"
    r"(?:/;SECTION=(?P<sec>[^/]+))?(?:/;PARTIAL=(?P<p0>[0-9]{1,10})(?:\.(?P<p1>[0-9]{1,10}))?)?",
    re.I)
_SERVER = re.compile(r"imap://(?:(?P<user>[^@/]*)@)?(?P<host>[^/@]*)(?P<path>/.*)", re.I | re.S)
_AUTH = re.compile(r";AUTH=(?:\*|[^;@/]+)$", re.I)


class BadUrl(Exception):
    """``NO [BADURL url]`` (RFC 4469 §5)."""

    def __init__(self, url: bytes) -> None:
        super().__init__("bad URL")
        self.url = url

    def code(self) -> bytes:
        """The response code, the URL cut to the characters resp-text-code allows."""
        return b"BADURL " + bytes(b for b in self.url if 0x20 <= b <= 0x7E and b != 0x5D)


class TooBig(Exception):
    """The message would exceed the APPEND size cap (``NO [TOOBIG]``)."""


@dataclass(frozen=True, slots=True)
class UrlPart:
    """A URL part as the client wrote it (checked when the command runs)."""

    url: bytes


@dataclass(frozen=True, slots=True)
class Ref:
    """A resolved-to-be reference to (a part of) one message."""

    mailbox: str
    uidvalidity: int | None
    uid: int
    section: mime.Section | None
    partial: tuple[int, int | None] | None


Part = bytes | Spool | UrlPart


def parse_parts(tokens: Sequence[Token], spool_of: Callable[[Token], Spool | None]) -> list[Part]:
    """The list after ``CATENATE``: ``TEXT literal`` and ``URL astring`` parts.

    ``spool_of`` gives the spool of a literal that was written to a file, else None.

    Raises:
        ParseError: empty list, an unknown part, a part without its argument.
        LimitExceeded: more than :data:`MAX_PARTS` parts.
    """
    if not tokens:
        raise ParseError("CATENATE needs parts")
    if len(tokens) > 2 * MAX_PARTS:
        raise LimitExceeded("catenate parts", b"CATENATE: at most %d parts." % MAX_PARTS)
    out: list[Part] = []
    it = iter(tokens)
    for kind in it:
        arg = next(it, None)
        word = kind.upper() if isinstance(kind, Atom) else b""
        if word == b"TEXT" and isinstance(arg, String):
            spool = spool_of(arg)
            out.append(spool if spool is not None else bytes(arg))
        elif word == b"URL" and isinstance(arg, String | Atom) and arg:
            out.append(UrlPart(bytes(arg)))
        else:
            raise ParseError("CATENATE part expected")
    return out


def parse_url(url: bytes, users: Collection[str], normalise: Callable[[str], str]) -> Ref:
    """An IMAP URL (RFC 5092) of a message in the user's own mailboxes.

    Args:
        users: the names the user part may have (login and address, lower case).
        normalise: mailbox-name check of the server (raises on a bad name).

    Raises:
        BadUrl: not such a URL, or not one of ours.
    """
    try:
        text = url.decode("ascii")
    except UnicodeDecodeError:
        raise BadUrl(url) from None
    m = _SERVER.fullmatch(text)
    if m is not None:
        user = m.group("user") or ""
        user = _AUTH.sub("", user)
        if not user or _unquote(user, url).lower() not in users:
            raise BadUrl(url)  # another user's, or anonymous
        path = m.group("path")
    elif text.startswith("/") and not text.startswith("//"):
        path = text
    else:
        raise BadUrl(url)
    p = _PATH.fullmatch(path)
    if p is None:
        raise BadUrl(url)
    try:
        mailbox = normalise(_unquote(p.group("box"), url))
    except (ValueError, errors.BadFolderName):
        raise BadUrl(url) from None
    uid = int(p.group("uid"))
    uv = int(p.group("uv")) if p.group("uv") else None
    if not 0 < uid <= MAX_NUMBER or (uv is not None and not 0 < uv <= MAX_NUMBER):
        raise BadUrl(url)
    section = None
    if p.group("sec"):
        try:
            section = parse_section(_unquote(p.group("sec"), url).encode())
        except (ParseError, UnicodeEncodeError):
            raise BadUrl(url) from None
    partial = None
    if p.group("p0") is not None:
        length = int(p.group("p1")) if p.group("p1") is not None else None
        if length == 0:
            raise BadUrl(url)
        partial = (int(p.group("p0")), length)
    return Ref(mailbox, uv, uid, section, partial)


def _unquote(s: str, url: bytes) -> str:
    try:
        return urllib.parse.unquote(s, errors="strict")
    except UnicodeDecodeError:
        raise BadUrl(url) from None


async def read_ref(view: MailboxView, ref: Ref, url: bytes, *, sync: bool) -> bytes:
    """The bytes a URL names, read and cut on the mailbox pool (``sync``: look at the
    folder afresh first; once per folder and command is enough).

    Raises:
        BadUrl: UIDVALIDITY changed, no such message or part.
    """

    def extract(folder: Any) -> bytes | None:  # pool thread
        if sync:
            folder.sync()
        if ref.uidvalidity is not None and folder.uidvalidity != ref.uidvalidity:
            return None
        try:
            data: bytes = folder.read(ref.uid)
        except (KeyError, FileNotFoundError):
            return None
        if ref.section is not None and (ref.section.path or ref.section.text):
            try:
                data = mime.section_bytes(data, mime.parse_message(data).node(), ref.section)
            except mime.SectionError:
                return None
        if ref.partial is not None:
            data = mime.partial(data, *ref.partial)
        return data

    data = await view.call(extract)
    if data is None:
        raise BadUrl(url)
    return data


async def build(user: UserMailboxes, parts: Sequence[Part], *, users: Collection[str],
                normalise: Callable[[str], str], limit: int, spool_threshold: int,
                spools: list[Spool]) -> bytes | Spool:
    """Join the parts of one message (see the module docstring).

    ``spools`` collects the spool made here, so the command's cleanup removes it when it
    is not stored.

    Raises:
        BadUrl: a URL part that does not resolve.
        TooBig: the message would exceed ``limit`` octets.
    """
    refs = [parse_url(p.url, users, normalise) if isinstance(p, UrlPart) else None
            for p in parts]  # every URL is checked before anything is read
    held: list[bytes | Spool] = []
    total = 0
    out: Spool | None = None
    views: dict[str, MailboxView] = {}
    for part, ref in zip(parts, refs, strict=True):
        piece: bytes | Spool
        if isinstance(part, UrlPart):
            assert ref is not None
            view = views.get(ref.mailbox)
            if view is None:
                try:
                    view = await user.open(ref.mailbox)
                except (errors.NoSuchFolder, errors.BadFolderName):
                    raise BadUrl(part.url) from None
            piece = await read_ref(view, ref, part.url, sync=ref.mailbox not in views)
            views[ref.mailbox] = view
        else:
            piece = part
        if isinstance(piece, Spool):
            await piece.finish()
        total += piece.size if isinstance(piece, Spool) else len(piece)
        if total > limit:
            raise TooBig()
        if out is None and (isinstance(piece, Spool) or total > spool_threshold):
            out = user.spool(0)
            spools.append(out)
            for earlier in held:
                await _feed(out, earlier)
            held = []
        if out is not None:
            await _feed(out, piece)
        else:
            held.append(piece)
    if out is None:
        return b"".join(p for p in held if isinstance(p, bytes))
    await out.finish()
    out.size = total
    return out


async def _feed(out: Spool, piece: bytes | Spool) -> None:
    if isinstance(piece, Spool):
        out.feed_from(piece)
    else:
        out.feed(piece)
    if out.backlog() > SPOOL_BACKLOG:  # the disk is slower than the store reads: wait
        writes = out.idle()
        if writes is not None:
            await writes
