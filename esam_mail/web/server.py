"""HTTP front-end: one Starlette (ASGI) application served by uvicorn on the shared asyncio loop.

Only this package speaks HTTP.  Feature modules (``esam_mail/web/<feature>.py``) export
``register(router, services)`` and add Starlette endpoints to the :class:`Router`
(``async def endpoint(request) -> Response``); :func:`build_app` collects them, adds the
static files and the middleware every response goes through:

* a request id, the ``http.request`` log event, and JSON ``500`` without exception text;
* a request-body cap (:data:`MAX_BODY`, ``413``);
* security headers: ``X-Content-Type-Options``, ``Referrer-Policy``, and on HTML a strict
  Content-Security-Policy (no inline script or style) unless the endpoint set its own;
* signed session cookies (Starlette's ``SessionMiddleware``, itsdangerous), ``HttpOnly``,
  ``SameSite=Lax`` and ``Secure`` whenever the request arrived over HTTPS (directly or
  through a proxy listed in ``web.trusted_proxies``);
* the reader's language (:mod:`esam_mail.web.i18n`).

Why uvicorn on the same loop (and not its own process): the web shares the directory
engine, the authenticator (with its brute-force lock-out) and the store notifier with IMAP
and SMTP.  ``uvicorn.Server.serve()`` runs as a task; its signal capture is switched off
because ``esam serve`` owns SIGTERM/SIGINT/SIGHUP, and :meth:`HTTPListener.stop` asks it to
finish in-flight requests within ``server.shutdown_grace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from esam_mail.errors import EsamError, ValidationError
from esam_mail.jsonbody import JSONBoundError, loads_bounded
from esam_mail.log import event, new_session_id
from esam_mail.web.statuses import http_status

__all__ = [
    "CSP",
    "MAX_BODY",
    "HTTPListener",
    "Request",
    "Response",
    "Router",
    "build_app",
    "error_response",
    "host",
    "json_body",
    "json_response",
    "peer",
    "request_id",
    "start_http",
]

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024
#: The largest piece of a response body handed to the server at once (uvicorn waits for
#: its write buffer to drain below 64 KiB before it takes the next piece).
SEND_CHUNK = 64 * 1024
STATIC_DIR = Path(__file__).with_name("static")
SESSION_COOKIE = "esam_session"

#: The default policy of every HTML page: scripts and styles only from this server, no
#: inline code, no plugins, no framing.  NCALayer listens on wss://127.0.0.1:13579.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' wss://127.0.0.1:13579; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with non-ASCII kept as is (Kazakh and Russian text stays readable)."""
    body = json.dumps(data, ensure_ascii=False, default=str).encode()
    return Response(body, status, headers=headers, media_type="application/json")


class Router:
    """What feature modules register on: Starlette routes, in registration order."""

    def __init__(self) -> None:
        self.routes: list[BaseRoute] = []
        self.body_limits: dict[str, int] = {}

    def allow_body(self, path: str, limit: int) -> None:
        """Requests to exactly ``path`` may carry up to ``limit`` bytes (instead of
        :data:`MAX_BODY`): e.g. the webmail's compose form with its attachments."""
        self.body_limits[path] = limit

    def add(self, method: str | list[str], path: str, endpoint: Endpoint, *, name: str | None = None,
            case_insensitive: bool = False) -> None:
        """``path`` uses Starlette's syntax (``/mail/{folder}``); GET also answers HEAD."""
        methods = [method] if isinstance(method, str) else list(method)
        route = Route(path, endpoint, methods=methods, name=name)
        if case_insensitive:  # Outlook spells /Autodiscover/Autodiscover.xml in any case
            route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
        self.routes.append(route)

    def mount(self, path: str, app: ASGIApp, *, name: str | None = None) -> None:
        self.routes.append(Mount(path, app=app, name=name))


def error_response(exc: BaseException, request_id: str) -> Response:
    """The JSON reply of the API for an error (never exception text for unknown errors)."""
    if isinstance(exc, ValidationError):
        problems = getattr(exc, "errors", None) or getattr(exc, "problems", None) or [exc]
        from esam_mail.web.form_errors import localize
        from esam_mail.web.i18n import current

        lang = current.get()  # ``text``: a service's i18n.Message in the reader's language
        errs = [{"field": getattr(p, "field", "?"), "message": getattr(p, "message", str(p)), "text": localize(p, lang)}
                for p in problems]
        return json_response({"error": "invalid", "problems": errs, "request_id": request_id}, 422)
    if isinstance(exc, EsamError):
        code = getattr(exc, "code", type(exc).__name__)
        public = getattr(exc, "public", None) or "request refused"
        status = http_status(exc)
        return json_response({"error": code, "message": public, "request_id": request_id}, status)
    return json_response({"error": "internal", "message": "internal error", "request_id": request_id}, 500)


def request_id(request: Request) -> str:
    return str(request.scope.get("esam.request_id", "-"))


def peer(request: Request) -> str:
    """The client address (the proxy's client when the proxy is trusted)."""
    return request.client.host if request.client else "?"


def host(request: Request) -> str:
    """The ``Host`` header without the port, lower case."""
    return request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()


async def json_body(request: Request) -> Any:
    """The JSON body within bounds (:func:`esam_mail.jsonbody.loads_bounded`): deep
    nesting, huge numbers, NaN or bad UTF-8 are a 422 naming the body, never a 500."""
    try:
        return loads_bounded(await request.body())
    except JSONBoundError as exc:  # the text is fixed and client-safe
        raise ValidationError("body", str(exc)) from None


# --------------------------------------------------------------------------- middleware


class _BodyTooLarge(Exception):
    pass


class Envelope:
    """Outermost ASGI middleware: request id, body cap, security headers, log line, 500s."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.limits = dict(limits or {})  # path -> a larger cap (Router.allow_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_session_id()
        scope["esam.request_id"] = rid
        started = time.monotonic()
        status = 0
        sent_start = False
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length", b"0")
        max_body = self.limits.get(scope.get("path", ""), self.max_body)
        if not declared.isdigit() or int(declared) > max_body:
            await self._plain(send, json_response({"error": "too_large"}, 413))
            self._log(scope, 413, started)
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise _BodyTooLarge
            return message

        async def secured_send(message: Message) -> None:
            nonlocal status, sent_start
            if message["type"] == "http.response.start":
                status = message["status"]
                sent_start = True
                out = list(message.get("headers", []))
                names = {k.lower() for k, _ in out}
                out.append((b"x-content-type-options", b"nosniff"))
                if b"referrer-policy" not in names:
                    out.append((b"referrer-policy", b"same-origin"))
                ctype = dict(out).get(b"content-type", b"")
                if ctype.startswith(b"text/html"):
                    if b"content-security-policy" not in names:
                        out.append((b"content-security-policy", CSP.encode()))
                    out.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": out}
            elif message["type"] == "http.response.body" and len(message.get("body", b"")) > SEND_CHUNK:
                # one big body in one send would sit whole in the transport's buffer while
                # the client reads (or does not): hand it over as the client takes it
                body = message["body"]
                more = message.get("more_body", False)
                for start in range(0, len(body), SEND_CHUNK):
                    last = start + SEND_CHUNK >= len(body)
                    await send({"type": "http.response.body", "body": bytes(body[start:start + SEND_CHUNK]),
                                "more_body": more if last else True})
                return
            await send(message)

        try:
            await self.app(scope, capped_receive, secured_send)
        except _BodyTooLarge:
            if not sent_start:
                await self._plain(send, json_response({"error": "too_large"}, 413))
            status = 413
        except Exception:
            log.exception("http handler failed")
            if not sent_start:
                await self._plain(send, error_response(RuntimeError(), rid))
            status = 500
        self._log(scope, status, started)

    @staticmethod
    async def _plain(send: Send, resp: Response) -> None:
        await send({"type": "http.response.start", "status": resp.status_code,
                    "headers": [*resp.raw_headers, (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": resp.body})

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        client = scope.get("client") or ("?", 0)
        event(log, "http.request", method=scope.get("method", "?"), path=scope.get("path", "?"),
              status=status, peer=client[0], ms=round((time.monotonic() - started) * 1000, 1))


class SchemeSession:
    """Starlette's signed-cookie session, with ``Secure`` exactly when the request came over
    HTTPS (uvicorn sets the scheme from ``X-Forwarded-Proto`` of a trusted proxy)."""

    def __init__(self, app: ASGIApp, secret_key: str, max_age: int) -> None:
        common: dict[str, Any] = {"secret_key": secret_key, "session_cookie": SESSION_COOKIE,
                                  "max_age": max_age, "same_site": "lax"}
        self.plain = SessionMiddleware(app, https_only=False, **common)
        self.tls = SessionMiddleware(app, https_only=True, **common)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self.tls if scope.get("scheme") in ("https", "wss") else self.plain
        await inner(scope, receive, send)


# --------------------------------------------------------------------------- the application


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.url.path.startswith("/api/")


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    if _wants_html(request) and status in (403, 404, 405):
        from esam_mail.web.templating import render

        return render(request, "error.html", {"status": status}, status=status)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    headers = getattr(exc, "headers", None)
    return json_response({"error": code}, status, headers=headers)


async def _esam_error(request: Request, exc: Exception) -> Response:
    return error_response(exc, request_id(request))


def build_app(services: Any, *, session_secret: str | None = None) -> Starlette:
    """The ASGI application of ``services`` (every ``register`` of the package)."""
    from esam_mail import i18n as catalogues
    from esam_mail.web import register_all
    from esam_mail.web.i18n import LanguageMiddleware
    from esam_mail.web.security import session_secret as load_secret
    from esam_mail.web.templating import preload

    catalogues.preload()  # file I/O now, not on the first request
    preload()
    router = Router()
    register_all(router, services)
    router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    cfg = services.cfg
    secret = session_secret or load_secret(cfg)
    middleware = [
        Middleware(Envelope, limits=router.body_limits),
        Middleware(SchemeSession, secret_key=secret, max_age=cfg.web.session_idle),
        Middleware(LanguageMiddleware),
    ]
    app = Starlette(
        routes=router.routes,
        middleware=middleware,
        exception_handlers={HTTPException: _not_found, EsamError: _esam_error},
    )
    app.state.services = services
    return app


# --------------------------------------------------------------------------- serving


class _EmbeddedServer:
    """``uvicorn.Server`` without its own signal handling (``esam serve`` owns the signals)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Embedded(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Embedded(config)


@dataclass
class HTTPListener:
    port: int
    server: Any
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (``timeout_graceful_shutdown``)."""
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await self.task


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    from esam_mail.sockets import reuseport_socket

    if reuse_port:
        sock = reuseport_socket(host, port)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start_http(app: ASGIApp, host: str, port: int, *, reuse_port: bool = False,
                     grace: float = 10.0, trusted_proxies: list[str] | None = None,
                     send_stall_timeout: float = 60.0) -> HTTPListener:
    """Serve ``app`` on host:port (0 = any free port) as a task of the running loop.

    ``reuse_port``: SO_REUSEPORT (worker processes share the port).  ``trusted_proxies``:
    addresses whose ``X-Forwarded-For``/``-Proto`` are believed (none by default).
    ``send_stall_timeout``: a connection whose client takes none of the waiting response
    bytes for that long is dropped (:mod:`esam_mail.web.sendguard`)."""
    import uvicorn

    from esam_mail.web.sendguard import guarded_h11

    sock = _listening_socket(host, port, reuse_port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=guarded_h11(send_stall_timeout), lifespan="off", log_config=None, access_log=False, server_header=False,
        date_header=True, proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies or []) or None,
        timeout_graceful_shutdown=max(1, int(grace)), timeout_keep_alive=15,
        h11_max_incomplete_event_size=64 * 1024, limit_concurrency=2000,
    )
    server = _EmbeddedServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises what failed
            raise OSError(f"HTTP listener on {host}:{port} stopped at start-up")
        await asyncio.sleep(0.01)
    return HTTPListener(bound, server, task)
