"""SIGHUP: reload TLS certificates and the reloadable part of the config.

``esam serve`` re-reads its config file on SIGHUP (``systemctl reload esam``).
If the file has problems they are logged and nothing changes.  Otherwise:

* TLS: the certificate and key files (``tls.cert``/``tls.key``, or the dev
  certificate in ``<data_dir>/tls``) are loaded into the *running* contexts:
  SMTP's ``ssl.SSLContext`` gets ``load_cert_chain`` again; IMAP swaps in new
  ``CertificateOptions`` behind its reloadable context factory (``imap.tlsreload``).  New connections see the new
  certificate; open sessions keep theirs.
* The keys in :data:`RELOADABLE` take effect at once.  Every other changed key is
  listed in a warning: it needs a restart.

The new values also replace the old ones in ``services.cfg``, so request-time
readers (autoconfig, MTA-STS, ``/metrics``) follow them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from esam_mail import tls
from esam_mail.config import Config, load
from esam_mail.errors import ConfigError
from esam_mail.log import event, set_level

log = logging.getLogger(__name__)

#: section -> keys applied by SIGHUP (None: every key of the section).
RELOADABLE: dict[str, frozenset[str] | None] = {
    "server": frozenset({"log_level"}),
    "auth": frozenset({"cache_seconds", "max_failures", "lock_seconds"}),
    "outbound": frozenset({"transport", "retry_base", "retry_max", "delay_warning", "expire"}),
    "tls": frozenset({"cert", "key"}),
    "public": None,
}


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    out = []
    for f in dataclasses.fields(Config):
        if f.metadata.get("internal"):
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        for g in dataclasses.fields(a):
            if getattr(a, g.name) != getattr(b, g.name):
                out.append(f"{f.name}.{g.name}")
    return out


def is_reloadable(dotted: str) -> bool:
    section, _, key = dotted.partition(".")
    if section not in RELOADABLE:
        return False
    keys = RELOADABLE[section]
    return keys is None or key in keys


def merge(old: Config, new: Config) -> Config:
    """``old`` with the reloadable keys taken from ``new``."""
    sections: dict[str, Any] = {}
    for section, keys in RELOADABLE.items():
        a, b = getattr(old, section), getattr(new, section)
        names = keys if keys is not None else {g.name for g in dataclasses.fields(b)}
        sections[section] = dataclasses.replace(a, **{k: getattr(b, k) for k in names})
    return dataclasses.replace(old, **sections)


def apply_log_level(level: str) -> None:
    set_level(level)


def apply_services(svc: Any, cfg: Config) -> None:
    """Push reloadable values into the running objects, through their public methods."""
    svc.authenticator.reconfigure(
        max_failures=cfg.auth.max_failures, lock_seconds=cfg.auth.lock_seconds,
        cache_seconds=cfg.auth.cache_seconds,
    )
    if svc.queue is not None:
        svc.queue.reconfigure(
            retry_base=cfg.outbound.retry_base, retry_max=cfg.outbound.retry_max,
            delay_warning=cfg.outbound.delay_warning, expire=cfg.outbound.expire,
            transport=cfg.outbound.transport,
        )
    svc.cfg = cfg


def reload_tls(server: Any, cfg: Config) -> None:
    """Load the certificate files of ``cfg`` into the running SMTP and IMAP contexts."""
    cert, key = str(cfg.tls_cert), str(cfg.tls_key)
    tls.server_context(cfg.tls_cert, cfg.tls_key, cfg.tls.min_version)  # validate first
    ctx = getattr(server, "tls_context", None)
    if ctx is not None:
        ctx.load_cert_chain(cert, key)
    if server.imap_listeners:
        from esam_mail.imap.tlsreload import reload_certificates

        reload_certificates(server.imap_listeners, cert, key)


async def reload_server(server: Any) -> bool:
    """Re-read ``server.cfg.source`` and the certificates; True when applied."""
    old: Config = server.cfg
    if server.services is None:
        log.warning("reload ignored: the server is still starting")
        return False
    try:
        new = load(old.source) if old.source else old
    except ConfigError as exc:
        for p in exc.problems:
            event(log, "server.reload_failed", logging.ERROR, problem=p)
        return False
    changed = changed_keys(old, new)
    restart = [k for k in changed if not is_reloadable(k)]
    merged = merge(old, new)
    try:
        reload_tls(server, merged)
    except Exception as exc:  # noqa: BLE001 - signal-handler boundary: a bad pair must not stop serving
        event(log, "server.reload_failed", logging.ERROR, problem=f"TLS: {type(exc).__name__}: {exc}")
        return False
    apply_log_level(merged.server.log_level)
    apply_services(server.services, merged)
    server.cfg = merged
    if restart:
        event(log, "server.reload_needs_restart", logging.WARNING, keys=",".join(restart))
    event(log, "server.reloaded", changed=",".join(k for k in changed if is_reloadable(k)) or "-",
          cert=str(merged.tls_cert))
    return True
