"""The process's one DNS resolver: cached, shared by SPF, DKIM, DMARC and outbound MX.

Without a cache every message paid for every lookup, and one slow answer (a 2 s
resolver stall) stalled every message behind it.  :class:`CachingResolver` is the
``inbound_auth.Resolver`` that ``app.build`` makes once per process:

* answers are kept by dnspython's own ``LRUCache`` for their TTL, and negative
  answers (NXDOMAIN, "no record of this type") for the SOA's negative TTL, min(SOA TTL,
  SOA MINIMUM), as RFC 2308 section 5 says (dnspython 2 does both);
* identical lookups in flight are joined: a hundred messages from one domain arriving
  together make one query, not a hundred;
* a server failure or timeout is remembered for ``servfail_ttl`` seconds (RFC 2308
  section 7.1 allows up to 5 minutes), so a dead name costs one timeout, not one per
  message; callers see the same ``DnsTempError`` (temperror, or a 4xx at the relay);
* everything is async (``dns.asyncresolver``): the event loop never waits on DNS.

Nameservers come from ``dns.nameservers`` (``"ip"`` or ``"ip:port"``) or, when that is
empty, from /etc/resolv.conf.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from esam_mail.services.mailflow.inbound_auth import DnsPythonResolver, DnsTempError

__all__ = ["CachingResolver", "parse_nameserver"]

log = logging.getLogger(__name__)


def parse_nameserver(value: str) -> tuple[str, int]:
    """``"192.0.2.1"`` -> (that, 53); ``"127.0.0.1:5353"``; ``"[::1]:53"``."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


class CachingResolver(DnsPythonResolver):
    """A ``Resolver`` with a TTL cache, negative caching, joined in-flight lookups and a
    short memory of server failures.

    Args:
        nameservers: ``"ip"`` / ``"ip:port"``; empty: the system's resolv.conf.
        timeout: seconds to wait for one server's answer before trying the next.
        lifetime: seconds one lookup may take in total.
        cache_entries: answers kept (least recently used go first).
        servfail_ttl: seconds a failed lookup is answered from memory (0: never).
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] = (),
        timeout: float = 2.0,
        lifetime: float = 5.0,
        cache_entries: int = 10_000,
        servfail_ttl: float = 30.0,
    ) -> None:
        import dns.asyncresolver
        import dns.nameserver
        import dns.resolver

        inner = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            inner.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(n)) for n in nameservers]
        inner.timeout = timeout
        inner.lifetime = lifetime
        inner.cache = dns.resolver.LRUCache(cache_entries)
        super().__init__(inner, lifetime=lifetime)
        self.cache = inner.cache
        self.servfail_ttl = servfail_ttl
        self._inflight: dict[tuple[str, str], asyncio.Future[list[object]]] = {}
        self._failures: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._max_failures = cache_entries
        self.stats = {"lookups": 0, "joined": 0, "failures_remembered": 0}

    async def _query(self, name: str, rdtype: str) -> list[object]:
        key = (name.lower().rstrip("."), rdtype)
        self.stats["lookups"] += 1
        failed = self._failures.get(key)
        if failed is not None:
            if failed[0] > time.monotonic():
                self.stats["failures_remembered"] += 1
                raise DnsTempError(failed[1])
            del self._failures[key]
        running = self._inflight.get(key)
        if running is not None:
            self.stats["joined"] += 1
            return await asyncio.shield(running)
        fut: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        self._inflight[key] = fut
        try:
            result = await super()._query(name, rdtype)  # dnspython's cache answers first
        except DnsTempError as e:
            if self.servfail_ttl > 0:
                self._failures[key] = (time.monotonic() + self.servfail_ttl, str(e))
                while len(self._failures) > self._max_failures:
                    self._failures.popitem(last=False)
            fut.set_exception(e)
            raise
        except BaseException as e:
            fut.set_exception(e if isinstance(e, Exception) else asyncio.CancelledError())
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a joined lookup's exception as seen (nobody else may have waited for it)."""
    if not fut.cancelled():
        fut.exception()
