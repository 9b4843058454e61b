"""Opaque tokens, keyed hashes and JWT access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from dashtam.core.tokens import (
    AccessTokenCodec,
    InvalidAccessToken,
    KeyedHasher,
    derive_key,
    new_opaque_token,
)

SECRET = b"unit-test-secret-with-enough-entropy-0123456789"
TTL = timedelta(minutes=30)


def codec(secret: bytes = SECRET, **overrides: Any) -> AccessTokenCodec:
    values: dict[str, Any] = {"issuer": "dashtam", "audience": "dashtam-api", "ttl": TTL}
    values.update(overrides)
    return AccessTokenCodec(secret, **values)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    payload: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "jti": "j-1",
        "iss": "dashtam",
        "aud": "dashtam-api",
        "typ": "access",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def forge(payload: dict[str, Any], *, key: bytes | None = None, algorithm: str = "HS256") -> str:
    """Sign `payload` the way an attacker who knows the right key and format would."""
    return jwt.encode(payload, key or derive_key(SECRET, "jwt/access"), algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def assert_rejected(token: str, decoder: AccessTokenCodec | None = None) -> None:
    with pytest.raises(InvalidAccessToken) as caught:
        (decoder or codec()).decode(token)
    assert caught.value.detail == "invalid or expired token"


class TestNewOpaqueToken:
    def test_is_url_safe_and_carries_256_bits(self) -> None:
        token = new_opaque_token()
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        assert len(base64.urlsafe_b64decode(token + "=")) == 32

    def test_never_repeats(self) -> None:
        assert len({new_opaque_token() for _ in range(2000)}) == 2000


class TestKeyedHasher:
    def test_digest_is_stable_hex_sha256(self) -> None:
        hasher = KeyedHasher(SECRET)
        digest = hasher.digest("tok", purpose="refresh")
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert digest == KeyedHasher(SECRET).digest("tok", purpose="refresh")

    def test_purposes_never_share_a_digest(self) -> None:
        hasher = KeyedHasher(SECRET)
        refresh = hasher.digest("same-token", purpose="refresh")
        reset = hasher.digest("same-token", purpose="password_reset")
        assert refresh != reset
        assert not hasher.matches("same-token", purpose="password_reset", digest=refresh)

    def test_uses_a_derived_key_not_the_raw_secret(self) -> None:
        digest = KeyedHasher(SECRET).digest("tok", purpose="refresh")
        assert digest != hmac.new(SECRET, b"tok", hashlib.sha256).hexdigest()
        assert digest != hashlib.sha256(b"tok").hexdigest()

    def test_another_secret_gives_another_digest(self) -> None:
        assert KeyedHasher(SECRET).digest("t", purpose="p") != KeyedHasher(b"other").digest(
            "t", purpose="p"
        )

    def test_matches_the_right_token_only(self) -> None:
        hasher = KeyedHasher(SECRET)
        digest = hasher.digest("tok", purpose="verify")
        assert hasher.matches("tok", purpose="verify", digest=digest)
        assert hasher.matches("tok", purpose="verify", digest=digest.upper())
        assert not hasher.matches("tok2", purpose="verify", digest=digest)

    def test_a_corrupt_digest_is_a_mismatch_not_an_error(self) -> None:
        assert not KeyedHasher(SECRET).matches("tok", purpose="verify", digest="é" * 64)

    def test_repr_hides_the_secret(self) -> None:
        assert SECRET.decode() not in repr(KeyedHasher(SECRET))


class TestAccessTokenCodec:
    def test_round_trip_carries_user_session_and_expiry(self) -> None:
        user_id, session_id = uuid.uuid4(), uuid.uuid4()
        token, expires_at = codec().encode(user_id=user_id, session_id=session_id)
        decoded = codec().decode(token)
        assert (decoded.user_id, decoded.session_id) == (user_id, session_id)
        assert decoded.expires_at == expires_at
        assert decoded.expires_at - decoded.issued_at == TTL
        assert decoded.jti

    def test_every_token_has_a_fresh_jti(self) -> None:
        ids = {uuid.uuid4() for _ in range(2)}
        first, second = (codec().encode(user_id=i, session_id=i)[0] for i in ids)
        assert codec().decode(first).jti != codec().decode(second).jti

    def test_header_pins_hs256_and_claims_are_complete(self) -> None:
        token, _ = codec().encode(user_id=uuid.uuid4(), session_id=uuid.uuid4())
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        payload = jwt.decode(token, options={"verify_signature": False})
        assert set(payload) == {"sub", "sid", "iat", "exp", "jti", "iss", "aud", "typ"}
        assert payload["typ"] == "access"

    def test_expired_token_is_rejected(self) -> None:
        issued = datetime.now(UTC) - TTL - timedelta(seconds=30)
        token, _ = codec().encode(user_id=uuid.uuid4(), session_id=uuid.uuid4(), now=issued)
        assert_rejected(token)

    def test_a_few_seconds_of_clock_skew_are_tolerated(self) -> None:
        issued = datetime.now(UTC) - TTL - timedelta(seconds=3)
        token, _ = codec().encode(user_id=uuid.uuid4(), session_id=uuid.uuid4(), now=issued)
        codec().decode(token)

    def test_wrong_audience_is_rejected(self) -> None:
        token, _ = codec(audience="another-api").encode(
            user_id=uuid.uuid4(), session_id=uuid.uuid4()
        )
        assert_rejected(token)

    def test_wrong_issuer_is_rejected(self) -> None:
        token, _ = codec(issuer="evil").encode(user_id=uuid.uuid4(), session_id=uuid.uuid4())
        assert_rejected(token)

    def test_wrong_type_is_rejected(self) -> None:
        assert_rejected(forge(claims(typ="refresh")))
        codec().decode(forge(claims()))  # the forge itself is otherwise valid

    @pytest.mark.parametrize("missing", ["sub", "sid", "iat", "exp", "jti", "iss", "aud", "typ"])
    def test_every_claim_is_required(self, missing: str) -> None:
        assert_rejected(forge(claims(**{missing: None})))

    def test_alg_none_is_rejected(self) -> None:
        unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
        assert_rejected(unsigned)

    @pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
    def test_another_algorithm_with_the_right_key_is_rejected(self) -> None:
        assert_rejected(forge(claims(), algorithm="HS512"))

    def test_tampered_payload_is_rejected(self) -> None:
        token, _ = codec().encode(user_id=uuid.uuid4(), session_id=uuid.uuid4())
        header, _, signature = token.split(".")
        assert_rejected(f"{header}.{b64(claims())}.{signature}")

    def test_wrong_key_is_rejected(self) -> None:
        token, _ = codec(b"another-secret").encode(user_id=uuid.uuid4(), session_id=uuid.uuid4())
        assert_rejected(token)

    def test_raw_secret_is_not_the_signing_key(self) -> None:
        assert_rejected(forge(claims(), key=SECRET))

    def test_non_uuid_subject_is_rejected(self) -> None:
        assert_rejected(forge(claims(sub="admin")))

    @pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z", "é.é.é"])
    def test_garbage_is_rejected(self, garbage: str) -> None:
        assert_rejected(garbage)

    def test_invalid_token_is_a_401_with_bearer_challenge(self) -> None:
        error = InvalidAccessToken()
        assert (error.status, error.code) == (401, "invalid_token")
        assert error.headers["WWW-Authenticate"] == "Bearer"

    def test_naive_issue_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            codec().encode(user_id=uuid.uuid4(), session_id=uuid.uuid4(), now=datetime.now())
