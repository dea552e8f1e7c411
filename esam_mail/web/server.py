"""HTTP front-end on twisted.web, sharing the asyncio loop with SMTP and IMAP.

Only this package speaks HTTP.  Handlers are ``async def handler(req: Request)
-> Response`` registered on a :class:`Router` by feature modules (EDS and online
applications, autoconfig, metrics, health).  Unknown exceptions become a 500
with a request id, never exception text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.web import resource, server

from esam_mail.errors import EsamError, ValidationError
from esam_mail.log import event, new_session_id
from esam_mail.web.statuses import http_status

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: str
    host: str
    request_id: str

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValidationError("body", "the request body is not valid JSON") from None

    def arg(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, ensure_ascii=False, default=str).encode(), "application/json")

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/html; charset=utf-8")


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """``pattern`` is a regex matched against the whole path (case-insensitive)."""
        self.routes.append((method.upper(), re.compile(f"^{pattern}$", re.IGNORECASE), handler))

    def match(self, method: str, path: str) -> tuple[Handler | None, bool]:
        path_known = False
        for m, rx, h in self.routes:
            if rx.match(path):
                path_known = True
                if m == method or (m == "GET" and method == "HEAD"):
                    return h, True
        return None, path_known


def error_response(exc: BaseException, request_id: str) -> Response:
    if isinstance(exc, ValidationError):
        problems = getattr(exc, "errors", None) or getattr(exc, "problems", None) or [exc]
        errs = [{"field": getattr(p, "field", "?"), "message": getattr(p, "message", str(p))} for p in problems]
        return Response.json({"error": "invalid", "problems": errs, "request_id": request_id}, 422)
    if isinstance(exc, EsamError):
        code = getattr(exc, "code", type(exc).__name__)
        public = getattr(exc, "public", None) or "request refused"
        status = http_status(exc)
        return Response.json({"error": code, "message": public, "request_id": request_id}, status)
    return Response.json({"error": "internal", "message": "internal error", "request_id": request_id}, 500)


class _Root(resource.Resource):
    isLeaf = True

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def render(self, request: server.Request) -> Any:
        rid = new_session_id()
        method = request.method.decode("ascii", "replace").upper()
        path = request.path.decode("utf-8", "replace")
        handler, known = self.router.match(method, path)
        if handler is None:
            resp = Response.json({"error": "not_found" if not known else "method_not_allowed"},
                                 404 if not known else 405)
            self._write(request, resp)
            return b""
        content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(content) > MAX_BODY:
            self._write(request, Response.json({"error": "too_large"}, 413))
            return b""
        peer = request.getClientAddress()
        req = Request(
            method=method, path=path,
            query=parse_qs(request.uri.decode("utf-8", "replace").partition("?")[2]),
            headers={k.decode("latin-1").lower(): v[-1].decode("latin-1")
                     for k, v in request.requestHeaders.getAllRawHeaders()},
            body=content, peer=getattr(peer, "host", "?"),
            host=(request.getHeader("host") or "").split(":")[0].lower(), request_id=rid,
        )

        async def run() -> Response:
            try:
                return await handler(req)
            except Exception as exc:
                if not isinstance(exc, EsamError):
                    log.exception("http handler failed")
                return error_response(exc, rid)

        d = defer.Deferred.fromFuture(asyncio.ensure_future(run()))

        def done(resp: Response) -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                self._write(request, resp, head=method == "HEAD")
                request.finish()
            event(log, "http.request", method=method, path=path, status=resp.status, peer=req.peer)

        d.addCallback(done)
        return server.NOT_DONE_YET

    @staticmethod
    def _write(request: server.Request, resp: Response, head: bool = False) -> None:
        request.setResponseCode(resp.status)
        request.setHeader(b"content-type", resp.content_type.encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        for k, v in resp.headers.items():
            request.setHeader(k.encode(), v.encode())
        if not head:
            request.write(resp.body)


@dataclass
class HTTPListener:
    port: int
    listening: Any

    async def stop(self) -> None:
        d = defer.maybeDeferred(self.listening.stopListening)
        await d.asFuture(asyncio.get_running_loop())


def start_http(router: Router, host: str, port: int, *, reuse_port: bool = False) -> HTTPListener:
    """Listen on host:port (0 = any free port) with the installed asyncio reactor.
    ``reuse_port``: set SO_REUSEPORT (worker processes share the port)."""
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor  # the installed asyncio reactor (typed as a module by the stubs)

    site = server.Site(_Root(router))
    site.displayTracebacks = False
    site.noisy = False
    if reuse_port:
        from esam_mail.sockets import adopt_reuseport

        lp = adopt_reuseport(reactor, host, port, site)
    else:
        lp = reactor.listenTCP(port, site, interface=host)
    return HTTPListener(lp.getHost().port, lp)
