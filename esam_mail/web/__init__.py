"""HTTP front-end.  Every module here with a ``register(router, services)``
function contributes routes (discovered at start-up)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def register_all(router: Any, services: Any) -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name == "server":
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(router, services)
