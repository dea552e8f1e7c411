"""A login cache shared by every worker process of one node, that still proves the password.

Why: with ``--workers N`` each process used to keep its own cache, so a user whose client
reconnects to another worker paid the full argon2id check again (about 120 ms of CPU), and
every entry expired 60 s after it was made, active or not: the outside benchmark saw the login
rate fall from ~105/s to ~30/s once the first minute was over (issue 20).

How:

* The table lives in an anonymous shared memory mapping (``mmap(-1, ...)`` is ``MAP_SHARED``),
  created by the supervisor *before* it forks, so all workers read and write the same bytes.
  No file, no socket, no thread hop: a lookup is one HMAC on the event loop (microseconds).
* An entry is ``expiry, born, tag`` where ``tag = HMAC(key, login, stored hash, password,
  expiry, born)``.  The key is random, made at start-up and held only in memory, so a hit
  proves the password exactly as the slow check would, the stored hash is never weakened, and
  a password change (a new stored hash) or a restart invalidates everything.  A torn entry (two
  workers writing one slot at once) fails the HMAC and costs only a slow check.
* Sliding expiry: a hit in the second half of an entry's life renews it for ``ttl`` seconds,
  up to ``max_age`` after the password was last really checked, so active users never pay
  argon2id again while idle ones fall out.
* Fixed size (``slots`` entries, 48 bytes each), indexed by a keyed hash of the login: it does
  not grow with anything a client sends; two logins sharing a slot evict each other.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import secrets
import struct

_ENTRY = struct.Struct("<dd32s")  # expiry, born (wall clock seconds), tag


class SharedLoginCache:
    def __init__(self, slots: int = 65536, *, ttl: float = 60.0, max_age: float = 3600.0) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self.ttl = float(ttl)
        self.max_age = float(max(max_age, ttl))
        self._key = secrets.token_bytes(32)
        self._map = mmap.mmap(-1, slots * _ENTRY.size)

    # -- internals -------------------------------------------------------------------
    def _offset(self, login: str) -> int:
        h = hashlib.blake2b(login.encode(), key=self._key[:16], digest_size=8).digest()
        return (int.from_bytes(h, "little") % self.slots) * _ENTRY.size

    def _tag(self, login: str, password: str, stored: str, expiry: float, born: float) -> bytes:
        msg = b"\0".join(
            (
                login.encode(),
                stored.encode(),
                password.encode("utf-8", "surrogatepass"),
                struct.pack("<dd", expiry, born),
            )
        )
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def _write(self, off: int, login: str, password: str, stored: str, expiry: float, born: float) -> None:
        self._map[off : off + _ENTRY.size] = _ENTRY.pack(
            expiry, born, self._tag(login, password, stored, expiry, born)
        )

    # -- API -----------------------------------------------------------------------------
    def check(self, login: str, password: str, stored: str, now: float) -> bool:
        """True when this password was proved for this login and stored hash recently."""
        if self.ttl <= 0:
            return False
        off = self._offset(login)
        expiry, born, tag = _ENTRY.unpack(self._map[off : off + _ENTRY.size])
        if not (now < expiry and now - born < self.max_age):
            return False
        if not hmac.compare_digest(tag, self._tag(login, password, stored, expiry, born)):
            return False
        if expiry - now < self.ttl / 2:  # active user: renew, never past max_age
            self._write(off, login, password, stored, min(now + self.ttl, born + self.max_age), born)
        return True

    def put(self, login: str, password: str, stored: str, now: float) -> None:
        """Remember a password that the slow check has just proved."""
        if self.ttl > 0:
            self._write(self._offset(login), login, password, stored, now + self.ttl, now)

    def forget(self, login: str) -> None:
        off = self._offset(login)
        self._map[off : off + _ENTRY.size] = bytes(_ENTRY.size)

    def clear(self) -> None:
        """Forget every login (in every process sharing the table)."""
        self._map[:] = bytes(len(self._map))

    def set_ttl(self, ttl: float) -> None:
        """A new lifetime (SIGHUP).  Entries carry their old expiry, so a change clears them."""
        if float(ttl) != self.ttl:
            self.ttl = float(ttl)
            self.max_age = max(self.max_age, self.ttl)
            self.clear()


_node_cache: SharedLoginCache | None = None


def node_cache(slots: int = 65536, *, ttl: float = 60.0, max_age: float = 3600.0) -> SharedLoginCache:
    """The node's cache: the first call makes it (the supervisor, before forking), later calls
    in the same process or its forked workers get that same shared table."""
    global _node_cache
    if _node_cache is None or _node_cache.slots != slots:
        _node_cache = SharedLoginCache(slots, ttl=ttl, max_age=max_age)
    else:
        _node_cache.ttl, _node_cache.max_age = float(ttl), float(max(max_age, ttl))
    return _node_cache
