"""HTTP front-end (Starlette, served by uvicorn on the shared loop: :mod:`esam_mail.web.server`).

Every module here with a ``register(router, services)`` function contributes routes
(discovered at start-up, in name order).  A feature adds ``esam_mail/web/<feature>.py``
with Starlette endpoints, templates under ``templates/`` (extending ``base.html``) and its
texts in the ``web`` catalogue (``esam_mail/locale/<lang>/LC_MESSAGES/web.po``)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def register_all(router: Any, services: Any) -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name in ("server", "templating", "security", "i18n", "statuses"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(router, services)
