"""Who is asking, and may they: users and roles from ltc.yaml, sessions, CSRF tokens.

* Passwords are stored as scrypt hashes (``scrypt$<n>$<r>$<p>$<salt>$<hash>``, see
  :func:`hash_password`; ``ltc ui hash-password`` prints one), checked in constant time.
* A session is a signed cookie (HMAC-SHA256 over the user and an expiry), HttpOnly and
  SameSite=Strict; nothing is kept on the server.
* Behind a reverse proxy that authenticates (SSO), ``X-Forwarded-User`` (or ``ui.proxy_header``) is
  trusted only from the addresses in ``ui.trusted_proxies``; from anywhere else it is ignored.
* CSRF: signed double-submit. A random ``ltc_csrf`` cookie, and every form carries
  HMAC(secret, cookie + user); a POST whose token does not match is refused (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

ROLES = ("viewer", "finance", "admin")
ACT_ROLES = ("finance", "admin")
SESSION_COOKIE = "ltc_session"
CSRF_COOKIE = "ltc_csrf"
_SCRYPT = (2**14, 8, 1)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    via: str  # "session" or "proxy"

    @property
    def can_act(self) -> bool:
        return self.role in ACT_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if not password:
        raise ValueError("an empty password cannot be hashed")
    n, r, p = _SCRYPT
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not password:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(_unb64(digest)), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


class Signer:
    """HMAC-SHA256 signatures with the UI's secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = secret

    def sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def session(self, user: str, hours: int) -> str:
        body = _b64(f"{user}\n{int(time.time()) + hours * 3600}".encode())
        return f"{body}.{self.sign('session|' + body)}"

    def session_user(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        body, sig = cookie.rsplit(".", 1)
        if not _same(sig, self.sign("session|" + body)):
            return None
        try:
            user, expiry = _unb64(body).decode().split("\n")
            if int(expiry) < time.time():
                return None
        except (ValueError, UnicodeDecodeError):
            return None
        return user

    def csrf(self, cookie: str, user: str) -> str:
        return self.sign(f"csrf|{cookie}|{user}")

    def csrf_ok(self, cookie: str | None, user: str, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return _same(self.csrf(cookie, user), token)


def _same(expected: str, given: str) -> bool:
    """``given`` (from the browser) equals ``expected``, compared in constant time; as bytes, since
    ``hmac.compare_digest`` raises TypeError on a str with a non-ASCII character (a 500 for any visitor)."""
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)
