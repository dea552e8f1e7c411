"""/healthz: the process answers and its directory database does too."""

from __future__ import annotations

from typing import Any

from esam_mail.web.server import Request, Response, Router, json_response


def register(router: Router, services: Any) -> None:
    async def healthz(request: Request) -> Response:
        try:
            await services.directory.count_by()
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            return json_response({"status": "fail", "directory": "unreachable"}, 503)
        return json_response({"status": "ok"})

    router.add("GET", "/healthz", healthz)
