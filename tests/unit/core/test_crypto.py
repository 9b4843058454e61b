"""The token vault (AES-256-GCM with key ids and row binding)."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashtam.core.config import ConfigurationError
from dashtam.core.crypto import DecryptionError, TokenVault

BINDING = {"table": "provider_tokens", "column": "access_token", "row_id": "row-1"}


def key_text(raw: bytes | None = None, *, padded: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(raw if raw is not None else os.urandom(32)).decode()
    return encoded if padded else encoded.rstrip("=")


def vault(*key_ids: str) -> TokenVault:
    return TokenVault.from_setting(",".join(f"{kid}:{key_text()}" for kid in key_ids or ("k1",)))


def flip(ciphertext: str, index: int) -> str:
    prefix, kid, body = ciphertext.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    return f"{prefix}.{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


class TestTokenVaultEncryption:
    def test_round_trip(self) -> None:
        v = vault()
        ciphertext = v.encrypt("schwab-access-token", **BINDING)
        assert v.decrypt(ciphertext, **BINDING) == "schwab-access-token"

    def test_ciphertext_is_self_describing_and_hides_the_plaintext(self) -> None:
        ciphertext = vault("k7").encrypt("secret-value", **BINDING)
        version, key_id, body = ciphertext.split(".")
        assert (version, key_id) == ("v1", "k7")
        assert "secret-value" not in ciphertext
        assert len(base64.urlsafe_b64decode(body + "==")) == 12 + len("secret-value") + 16

    @pytest.mark.parametrize("index", [0, 11, 12, -1])  # nonce, ciphertext, tag
    def test_tampering_anywhere_is_detected(self, index: int) -> None:
        v = vault()
        ciphertext = v.encrypt("secret-value", **BINDING)
        with pytest.raises(DecryptionError):
            v.decrypt(flip(ciphertext, index), **BINDING)

    @pytest.mark.parametrize(
        "other",
        [
            {"row_id": "row-2"},
            {"column": "refresh_token"},
            {"table": "other_table"},
        ],
    )
    def test_value_moved_to_another_place_does_not_decrypt(self, other: dict[str, str]) -> None:
        v = vault()
        ciphertext = v.encrypt("secret-value", **BINDING)
        with pytest.raises(DecryptionError, match="authentication"):
            v.decrypt(ciphertext, **{**BINDING, **other})

    def test_binding_fields_cannot_be_shifted_between_each_other(self) -> None:
        v = vault()
        ciphertext = v.encrypt("s", table="ab", column="c", row_id="1")
        with pytest.raises(DecryptionError):
            v.decrypt(ciphertext, table="a", column="bc", row_id="1")

    def test_unknown_key_id_is_refused(self) -> None:
        ciphertext = vault("old").encrypt("secret-value", **BINDING)
        with pytest.raises(DecryptionError, match="unknown key id"):
            vault("new").decrypt(ciphertext, **BINDING)

    def test_same_key_id_with_another_key_fails_authentication(self) -> None:
        ciphertext = vault("k1").encrypt("secret-value", **BINDING)
        with pytest.raises(DecryptionError):
            vault("k1").decrypt(ciphertext, **BINDING)

    @pytest.mark.parametrize(
        "malformed",
        [
            "",
            "v1",
            "v1.k1",
            "v2.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.k1.!!!!",
            "v1.k1.AAAA",
            "v1.bad id.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
            "plain text token",
        ],
    )
    def test_malformed_input_is_a_decryption_error(self, malformed: str) -> None:
        with pytest.raises(DecryptionError):
            vault().decrypt(malformed, **BINDING)

    def test_nonces_are_unique(self) -> None:
        v = vault()
        nonces = {
            base64.urlsafe_b64decode(v.encrypt("same", **BINDING).split(".")[2] + "==")[:12]
            for _ in range(2000)
        }
        assert len(nonces) == 2000

    @settings(max_examples=200, deadline=None)
    @given(
        plaintext=st.text(max_size=2000),
        table=st.text(max_size=40),
        column=st.text(max_size=40),
        row_id=st.text(max_size=40),
    )
    def test_any_text_round_trips_only_under_its_binding(
        self, plaintext: str, table: str, column: str, row_id: str
    ) -> None:
        v = _PROPERTY_VAULT
        ciphertext = v.encrypt(plaintext, table=table, column=column, row_id=row_id)
        assert v.decrypt(ciphertext, table=table, column=column, row_id=row_id) == plaintext
        with pytest.raises(DecryptionError):
            v.decrypt(ciphertext, table=table, column=column, row_id=row_id + "x")


_PROPERTY_VAULT = vault("prop")


class TestTokenVaultRotation:
    def test_last_key_encrypts_and_older_keys_still_decrypt(self) -> None:
        k1, k2 = key_text(), key_text()
        before = TokenVault.from_setting(f"k1:{k1}")
        after = TokenVault.from_setting(f"k1:{k1},k2:{k2}")
        old = before.encrypt("token", **BINDING)
        assert after.active_key_id == "k2"
        assert after.decrypt(old, **BINDING) == "token"
        assert after.key_id_of(old) == "k1"
        assert after.needs_rotation(old)
        assert not after.needs_rotation(after.encrypt("token", **BINDING))

    def test_reencrypt_moves_to_the_active_key_with_the_same_binding(self) -> None:
        k1, k2 = key_text(), key_text()
        after = TokenVault.from_setting(f"k1:{k1},k2:{k2}")
        old = TokenVault.from_setting(f"k1:{k1}").encrypt("token", **BINDING)
        new = after.reencrypt(old, **BINDING)
        assert after.key_id_of(new) == "k2"
        assert not after.needs_rotation(new)
        assert after.decrypt(new, **BINDING) == "token"
        with pytest.raises(DecryptionError):
            TokenVault.from_setting(f"k2:{k2}").decrypt(new, **{**BINDING, "row_id": "row-9"})

    def test_once_the_old_key_is_removed_its_ciphertexts_fail_cleanly(self) -> None:
        k1, k2 = key_text(), key_text()
        old = TokenVault.from_setting(f"k1:{k1}").encrypt("token", **BINDING)
        with pytest.raises(DecryptionError, match="unknown key id"):
            TokenVault.from_setting(f"k2:{k2}").decrypt(old, **BINDING)


class TestTokenVaultFromSetting:
    def test_padding_is_optional(self) -> None:
        raw = os.urandom(32)
        padded = TokenVault.from_setting(f"k1:{key_text(raw, padded=True)}")
        bare = TokenVault.from_setting(f" k1 : {key_text(raw)} ")
        assert bare.decrypt(padded.encrypt("x", **BINDING), **BINDING) == "x"

    @pytest.mark.parametrize(
        ("setting", "message"),
        [
            ("", "no key"),
            ("k1", "not `<id>:<base64url key>`"),
            (":" + "A" * 43, "not `<id>:<base64url key>`"),
            ("k1:" + key_text(bytes(16)), "16 bytes"),
            ("k1:" + key_text(bytes(33)), "33 bytes"),
            ("bad.id:" + key_text(bytes(32)), "key id"),
            ("k1:not base64!!", "not base64url"),
        ],
        ids=["empty", "no-colon", "no-id", "short", "long", "bad-id", "not-base64"],
    )
    def test_bad_settings_are_refused_with_a_clear_reason(self, setting: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
            TokenVault.from_setting(setting)

    def test_duplicate_key_ids_are_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="used twice"):
            TokenVault.from_setting(f"k1:{key_text()},k1:{key_text()}")

    def test_errors_never_echo_key_material(self) -> None:
        secret = key_text(os.urandom(31))
        with pytest.raises(ConfigurationError) as caught:
            TokenVault.from_setting(f"k1:{key_text()},k2:{secret}")
        assert secret not in str(caught.value)
        assert secret[:10] not in str(caught.value)

    def test_repr_reveals_no_key(self) -> None:
        raw = os.urandom(32)
        text = repr(TokenVault.from_setting(f"k1:{key_text(raw)}"))
        assert key_text(raw) not in text and key_text(raw)[:8] not in text
        assert str(raw) not in text
        assert "k1" in text
