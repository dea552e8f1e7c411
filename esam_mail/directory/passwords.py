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
