"""Password policy and hashing."""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata

import bcrypt
import pytest

from dashtam.core import passwords
from dashtam.core.passwords import (
    PasswordHasher,
    WeakPassword,
    check_password_policy,
    common_passwords,
)


def password_of(length: int, char: str = "x") -> str:
    """A password of exactly `length` code points that no other rule rejects."""
    return "Zq7-" + char * (length - 4)


def reason(password: str, *, email: str | None = None) -> str:
    with pytest.raises(WeakPassword) as caught:
        check_password_policy(password, email=email)
    return caught.value.detail


class TestCheckPasswordPolicy:
    def test_eleven_characters_are_too_short(self) -> None:
        assert "at least 12" in reason(password_of(11))

    def test_twelve_characters_are_enough(self) -> None:
        check_password_policy(password_of(12))

    def test_one_hundred_twenty_eight_characters_are_allowed(self) -> None:
        check_password_policy(password_of(128))

    def test_one_hundred_twenty_nine_characters_are_refused_not_truncated(self) -> None:
        assert "at most 128" in reason(password_of(129))

    def test_length_counts_code_points_after_nfc(self) -> None:
        decomposed = "e\u0301" * 12  # 24 code points, 12 after NFC
        assert len(decomposed) == 24
        check_password_policy(decomposed)
        composed_short = "\u00e9" * 11  # 11 after NFC even when typed decomposed
        assert "at least 12" in reason(unicodedata.normalize("NFD", composed_short))

    def test_any_characters_without_composition_rules(self) -> None:
        for candidate in (
            "correct horse battery",
            "🦊🦊🦊🦊🦊🦊🦊🦊🦊🦊🦊🦊",
            "日本語のパスワードです長い",
        ):
            check_password_policy(candidate)

    def test_common_passwords_are_refused_case_insensitively(self) -> None:
        assert "q1w2e3r4t5y6" in common_passwords()
        assert "too common" in reason("q1w2e3r4t5y6")
        assert "too common" in reason("Q1W2E3R4T5Y6")

    def test_every_long_enough_common_password_is_refused(self) -> None:
        long_ones = [p for p in common_passwords() if 12 <= len(p) <= 128]
        assert len(long_ones) > 50
        for candidate in long_ones:
            with pytest.raises(WeakPassword):
                check_password_policy(candidate)

    def test_common_list_has_ten_thousand_entries(self) -> None:
        assert len(common_passwords()) == 10_000

    def test_password_containing_the_email_local_part_is_refused(self) -> None:
        assert "email" in reason("my-alice.smith-pass", email="Alice.Smith@example.com")
        assert "email" in reason("ALICE-says-hello", email="alice@example.com")

    def test_short_local_parts_are_ignored(self) -> None:
        check_password_policy("jojojojojojojo", email="jo@example.com")

    def test_product_name_is_refused(self) -> None:
        assert "dashtam" in reason("my-DashTam-password")

    def test_weak_password_is_a_422_with_its_own_code(self) -> None:
        with pytest.raises(WeakPassword) as caught:
            check_password_policy("short")
        assert caught.value.status == 422
        assert caught.value.code == "weak_password"


class TestPasswordHasher:
    async def test_new_hashes_are_argon2id(self) -> None:
        hashed = await PasswordHasher().hash("a long enough password")
        assert hashed.startswith("$argon2id$")

    async def test_right_password_verifies_without_upgrade(self) -> None:
        hasher = PasswordHasher()
        hashed = await hasher.hash("a long enough password")
        assert await hasher.verify("a long enough password", hashed) == (True, None)

    async def test_wrong_password_fails(self) -> None:
        hasher = PasswordHasher()
        hashed = await hasher.hash("a long enough password")
        assert await hasher.verify("a long enough passworD", hashed) == (False, None)

    async def test_nfc_and_nfd_forms_are_the_same_password(self) -> None:
        hasher = PasswordHasher()
        phrase = "caf\u00e9 au lait, s'il vous pla\u00eet"
        hashed = await hasher.hash(phrase)
        decomposed = unicodedata.normalize("NFD", phrase)
        assert decomposed != phrase
        valid, _ = await hasher.verify(decomposed, hashed)
        assert valid

    async def test_bcrypt_hash_verifies_and_returns_an_argon2id_upgrade(self) -> None:
        hasher = PasswordHasher()
        legacy = bcrypt.hashpw(b"legacy password 1", bcrypt.gensalt(rounds=4)).decode()
        valid, upgraded = await hasher.verify("legacy password 1", legacy)
        assert valid
        assert upgraded is not None and upgraded.startswith("$argon2id$")
        assert await hasher.verify("legacy password 1", upgraded) == (True, None)

    async def test_wrong_password_against_bcrypt_gives_no_upgrade(self) -> None:
        legacy = bcrypt.hashpw(b"legacy password 1", bcrypt.gensalt(rounds=4)).decode()
        assert await PasswordHasher().verify("legacy password 2", legacy) == (False, None)

    async def test_legacy_bcrypt_of_a_long_password_still_verifies(self) -> None:
        # Older bcrypt silently used the first 72 bytes; bcrypt 5 raises instead.
        password = "p" * 100
        legacy = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
        valid, upgraded = await PasswordHasher().verify(password, legacy)
        assert valid and upgraded is not None

    async def test_unknown_hash_format_is_a_failed_verification(self) -> None:
        assert await PasswordHasher().verify("whatever password", "plaintext!") == (False, None)

    async def test_hashing_runs_off_the_event_loop(self) -> None:
        hasher = PasswordHasher()
        loop_thread = threading.get_ident()
        seen: list[int] = []
        original = hasher._hash.verify_and_update

        def spy(password: str, hashed: str) -> tuple[bool, str | None]:
            seen.append(threading.get_ident())
            return original(password, hashed)

        hasher._hash.verify_and_update = spy  # type: ignore[method-assign]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        hashed = await hasher.hash("a long enough password")
        await hasher.verify("a long enough password", hashed)
        task.cancel()
        assert seen and seen[0] != loop_thread
        assert ticks >= 10, "the loop was blocked while hashing"

    async def test_dummy_verification_costs_about_as_much_as_a_real_one(self) -> None:
        hasher = PasswordHasher()
        hashed = await hasher.hash("a long enough password")
        await hasher.verify_dummy("warm up the dummy hash")
        started = time.perf_counter()
        await hasher.verify("a long enough password", hashed)
        real = time.perf_counter() - started
        started = time.perf_counter()
        await hasher.verify_dummy("someone@example.com's guess")
        dummy = time.perf_counter() - started
        assert dummy > real * 0.5
        assert real > 0.005  # argon2id really ran (not a shortcut)

    async def test_no_more_hashes_run_at_once_than_there_are_cores(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        hasher = PasswordHasher()
        running = peak = 0
        lock = threading.Lock()

        def slow_hash(password: str) -> str:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return "hashed"

        monkeypatch.setattr(hasher._hash, "hash", slow_hash)
        cores = passwords._usable_cores()
        results = await asyncio.gather(
            *(hasher.hash(f"password number {n}") for n in range(cores * 3))
        )

        assert results == ["hashed"] * (cores * 3)
        assert 1 <= peak <= cores
