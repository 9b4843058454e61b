"""Our own tokens: opaque random tokens, their keyed hashes, and JWT access tokens.

Opaque tokens (refresh, email verification, password reset) are stored only as HMAC-SHA256
digests under a per-purpose key, so a database leak reveals nothing usable and a digest made
for one purpose can never match another. Access tokens are short-lived HS256 JWTs whose key
is derived from `SECRET_KEY` with its own label, never the raw secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dashtam.core.config import Settings
from dashtam.core.errors import Unauthorized

#: 32 random bytes = 256 bits, rendered as 43 URL-safe characters.
_OPAQUE_TOKEN_BYTES = 32
_JWT_ALGORITHM = "HS256"
_ACCESS_TYPE = "access"
_REQUIRED_CLAIMS = ("sub", "sid", "iat", "exp", "jti", "iss", "aud", "typ")
#: Clock skew tolerated between replicas; small, because access tokens are short-lived.
_LEEWAY_SECONDS = 10


def derive_key(secret: bytes, purpose: str) -> bytes:
    """Derive an independent 256-bit key for one purpose from the server secret (HKDF-SHA256).

    Args:
        secret: The server secret (`SECRET_KEY`).
        purpose: A label such as `jwt/access`; different labels give unrelated keys.

    Returns:
        32 key bytes.
    """
    if not secret:
        raise ValueError("the secret must not be empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"dashtam/" + purpose.encode()
    )
    return hkdf.derive(secret)


def new_opaque_token() -> str:
    """Return a fresh single-use token: 256 random bits, URL-safe, 43 characters."""
    return secrets.token_urlsafe(_OPAQUE_TOKEN_BYTES)


class KeyedHasher:
    """HMAC-SHA256 digests of opaque tokens, keyed per purpose (`refresh`, `reset`, …)."""

    def __init__(self, secret: bytes) -> None:
        """Keep the secret only to derive purpose keys (cached after first use).

        Args:
            secret: The server secret (`SECRET_KEY` bytes).
        """
        if not secret:
            raise ValueError("the secret must not be empty")
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "KeyedHasher(<secret>)"

    def _key(self, purpose: str) -> bytes:
        key = self._keys.get(purpose)
        if key is None:
            if not purpose:
                raise ValueError("a purpose is required")
            key = derive_key(self._secret, f"keyed-hash/{purpose}")
            self._keys[purpose] = key
        return key

    def digest(self, token: str, *, purpose: str) -> str:
        """Return the hex HMAC-SHA256 of `token` under the key for `purpose` (64 characters)."""
        return hmac.new(self._key(purpose), token.encode("utf-8"), hashlib.sha256).hexdigest()

    def matches(self, token: str, *, purpose: str, digest: str) -> bool:
        """Tell, in constant time, whether `token` hashes to `digest` for `purpose`."""
        # Bytes, because compare_digest refuses non-ASCII str (a corrupt digest must not raise).
        expected = self.digest(token, purpose=purpose).encode()
        return hmac.compare_digest(expected, digest.lower().encode("utf-8", "replace"))


@dataclass(frozen=True)
class AccessTokenClaims:
    """The verified contents of an access token."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    issued_at: datetime
    expires_at: datetime


class InvalidAccessToken(Unauthorized):
    """401: the bearer token is malformed, forged, expired or not an access token."""

    code = "invalid_token"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        # One answer for every failure: the reason is logged by nobody and told to nobody.
        super().__init__(detail or "invalid or expired token", **kwargs)


class AccessTokenCodec:
    """Issue and verify HS256 access tokens (`sub`, `sid`, `iat`, `exp`, `jti`, `iss`, `aud`)."""

    def __init__(self, secret: bytes, *, issuer: str, audience: str, ttl: timedelta) -> None:
        """Derive the signing key and fix the claims every token must carry.

        Args:
            secret: The server secret (`SECRET_KEY` bytes); the JWT key is derived from it.
            issuer: The `iss` claim written and required.
            audience: The `aud` claim written and required.
            ttl: Lifetime of issued tokens.
        """
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        self._key = derive_key(secret, "jwt/access")
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl
        # Built once: decode runs on every authenticated request.
        self._options: dict[str, Any] = {
            "require": list(_REQUIRED_CLAIMS),
            "verify_signature": True,
            "verify_exp": True,
            "verify_iat": True,
            "verify_aud": True,
            "verify_iss": True,
        }

    def __repr__(self) -> str:
        return f"AccessTokenCodec(issuer={self._issuer!r}, audience={self._audience!r})"

    def encode(
        self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime | None = None
    ) -> tuple[str, datetime]:
        """Issue an access token.

        Args:
            user_id: Goes in `sub`.
            session_id: Goes in `sid` (lets every request check the session is not revoked).
            now: The issue time (tests); defaults to the current UTC time.

        Returns:
            `(token, expires_at)`.
        """
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        # Whole seconds: JWT times are integers, and `expires_at` must equal the `exp` claim.
        issued = now.astimezone(UTC).replace(microsecond=0)
        expires = issued + self.ttl
        payload = {
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_urlsafe(16),
            "iss": self._issuer,
            "aud": self._audience,
            "typ": _ACCESS_TYPE,
        }
        token = jwt.encode(payload, self._key, algorithm=_JWT_ALGORITHM)
        return token, expires

    def decode(self, token: str) -> AccessTokenClaims:
        """Verify an access token and return its claims.

        Only HS256 under our derived key is accepted (`alg: none` and every other algorithm are
        refused); every claim must be present; `iss`, `aud`, `typ` and `exp` must be right.

        Raises:
            InvalidAccessToken: For any problem at all.
        """
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[_JWT_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options=self._options,  # type: ignore[arg-type]
            )
            if payload["typ"] != _ACCESS_TYPE:
                raise InvalidAccessToken()
            jti = payload["jti"]
            if not isinstance(jti, str) or not jti:
                raise InvalidAccessToken()
            return AccessTokenClaims(
                user_id=uuid.UUID(payload["sub"]),
                session_id=uuid.UUID(payload["sid"]),
                jti=jti,
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except InvalidAccessToken:
            raise
        except (
            jwt.PyJWTError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            OverflowError,
            OSError,
        ) as exc:
            raise InvalidAccessToken() from exc


def build_keyed_hasher(settings: Settings) -> KeyedHasher:
    """The keyed hasher for these settings (call `settings.ensure_secrets()` first)."""
    return KeyedHasher(settings.secret_key_bytes)


def build_access_token_codec(settings: Settings) -> AccessTokenCodec:
    """The access-token codec for these settings (call `settings.ensure_secrets()` first)."""
    return AccessTokenCodec(
        settings.secret_key_bytes,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(minutes=settings.access_token_ttl_minutes),
    )
