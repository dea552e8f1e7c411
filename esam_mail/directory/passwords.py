"""Password hashing with libpass (import name ``passlib``).

New hashes are argon2id.  Hashes imported from Dovecot keep working:
``{SHA512-CRYPT}``, ``{BLF-CRYPT}``, ``{ARGON2ID}``, ``{SSHA512}`` ... are
stripped of their prefix and verified by the matching scheme; a successful
login with an older scheme (or weaker argon2 parameters) returns a new hash to
store (upgrade on login).  CRAM-MD5 style secrets are refused.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from passlib.context import CryptContext

SCHEMES = [
    "argon2",
    "bcrypt",
    "sha512_crypt",
    "sha256_crypt",
    "md5_crypt",
    "ldap_salted_sha512",
    "ldap_salted_sha256",
    "ldap_salted_sha1",
]

# Dovecot scheme prefix -> how the rest is stored
_DOVECOT = {
    "ARGON2ID": "",
    "ARGON2I": "",
    "BLF-CRYPT": "",
    "BCRYPT": "",
    "SHA512-CRYPT": "",
    "SHA256-CRYPT": "",
    "MD5-CRYPT": "",
    "CRYPT": "",
    "SSHA512": "{SSHA512}",
    "SSHA256": "{SSHA256}",
    "SSHA": "{SSHA}",
}


_ARGON2ID_V19 = re.compile(r"^\$argon2id\$v=19\$m=\d{1,8},t=\d{1,4},p=\d{1,3}\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{22,128}$")


def _sodium_verify(stored: str, password: str) -> bool | None:
    """argon2id v=19 through libsodium (PyNaCl): the same PHC string and strength on
    one thread, about 2x faster than argon2-cffi here and ~4x less CPU (see
    docs/benchmarks.md).  None when libsodium is not the right tool for this string
    (other schemes or versions, a password that is not UTF-8): passlib decides then."""
    if not _ARGON2ID_V19.match(stored):
        return None
    try:
        from nacl import exceptions, pwhash

        secret = password.encode("utf-8")
    except (ImportError, UnicodeError):
        return None
    try:
        return bool(pwhash.argon2id.verify(stored.encode("ascii"), secret))
    except exceptions.InvalidkeyError:
        return False


class PasswordHasher:
    def __init__(self, memory_kib: int = 65536, time_cost: int = 3, parallelism: int = 4) -> None:
        self.ctx = CryptContext(
            schemes=SCHEMES,
            deprecated="auto",
            argon2__type="ID",
            argon2__memory_cost=memory_kib,
            argon2__rounds=time_cost,
            argon2__parallelism=parallelism,
        )

    def hash(self, password: str) -> str:
        return self.ctx.hash(password)

    @staticmethod
    def normalize(stored: str) -> str | None:
        """Dovecot ``{SCHEME}hash`` -> what passlib understands; None if unusable."""
        if stored.startswith("{"):
            scheme, _, rest = stored[1:].partition("}")
            scheme = scheme.upper()
            if scheme == "PLAIN":
                return "{PLAIN}" + rest
            if scheme not in _DOVECOT:
                return None
            return _DOVECOT[scheme] + rest
        return stored

    def verify(self, password: str, stored: str) -> tuple[bool, str | None]:
        """Return (ok, new_hash_or_None).  Never raises for bad input."""
        norm = self.normalize(stored)
        if norm is None:
            return False, None
        if norm.startswith("{PLAIN}"):
            ok = hmac.compare_digest(norm[7:].encode(), password.encode())
            return ok, (self.hash(password) if ok else None)
        sodium = _sodium_verify(norm, password)
        if sodium is not None:  # argon2id v=19 (what we store): libsodium decides
            return sodium, (self.hash(password) if sodium and self.ctx.needs_update(norm) else None)
        try:
            ok, new = self.ctx.verify_and_update(password, norm)
        except (ValueError, TypeError):
            return False, None
        if ok and new is None and norm is not stored:
            new = self.hash(password)  # imported: store in our own format
        return bool(ok), new


# -- choosing argon2id parameters for this machine (``esam passwd-bench``) ----------------------

# OWASP Password Storage Cheat Sheet: argon2id minimums, equivalent in strength (memory KiB, time).
OWASP_FLOOR: tuple[tuple[int, int], ...] = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


def meets_owasp_floor(memory_kib: int, time_cost: int) -> bool:
    return any(memory_kib >= m and time_cost >= t for m, t in OWASP_FLOOR)


@dataclass(frozen=True)
class Argon2Choice:
    memory_kib: int
    time_cost: int
    parallelism: int
    median_ms: float
    tried: tuple[tuple[int, int, float], ...]  # (memory_kib, time_cost, median ms) in order tried
    within_target: bool


def _measure_verify(memory_kib: int, time_cost: int, rounds: int) -> float:
    """Median wall time (ms) of the login path's check for one such hash."""
    import statistics
    import time

    hasher = PasswordHasher(memory_kib, time_cost, 1)
    secret = secrets.token_urlsafe(12)  # a throw-away password, only for timing
    stored = hasher.hash(secret)
    times = []
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        ok, _new = hasher.verify(secret, stored)
        times.append((time.perf_counter() - t0) * 1000)
        if not ok:  # pragma: no cover - would mean a broken argon2 installation
            raise RuntimeError("argon2id self-check failed")
    return statistics.median(times)


def choose_argon2(
    target_ms: float,
    *,
    max_memory_kib: int = 262144,
    rounds: int = 3,
    measure: Callable[[int, int, int], float] | None = None,
) -> Argon2Choice:
    """The strongest argon2id parameters whose login check stays within ``target_ms`` here.

    Memory first (it is what makes GPU guessing expensive), then iterations; never below the
    OWASP minimums, even when the machine is too slow for the target (``within_target`` then
    says so).  Parallelism is 1: a server verifies many logins at once, one per thread, and the
    libsodium check is single-threaded anyway.
    """
    measure = measure or _measure_verify
    tried: list[tuple[int, int, float]] = []
    floor_m, floor_t = 19456, 2
    best: tuple[int, int, float] | None = None
    for m in (19456, 32768, 47104, 65536, 98304, 131072, 196608, 262144, 393216, 524288):
        if m > max_memory_kib:
            break
        ms = measure(m, floor_t if m < 47104 else 1, rounds)
        tried.append((m, floor_t if m < 47104 else 1, ms))
        if ms > target_ms:
            break
        best = tried[-1]
    if best is None:  # even the floor is slower than the target: the floor it is
        known = next((x[2] for x in tried if (x[0], x[1]) == (floor_m, floor_t)), None)
        if known is None:
            known = measure(floor_m, floor_t, rounds)
            tried.append((floor_m, floor_t, known))
        return Argon2Choice(floor_m, floor_t, 1, known, tuple(tried), within_target=False)
    m, t, ms = best
    while t < 10:  # more iterations at that memory while they still fit
        cost = measure(m, t + 1, rounds)
        tried.append((m, t + 1, cost))
        if cost > target_ms:
            break
        t, ms = t + 1, cost
    return Argon2Choice(m, t, 1, ms, tuple(tried), within_target=True)
