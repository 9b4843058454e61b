"""Tokens at rest: never plaintext, bound to their row, and rotatable to a new key resumably."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text, update
from typer.testing import CliRunner

from dashtam.cli import app as cli_app
from dashtam.core.config import generate_encryption_key
from dashtam.core.crypto import DecryptionError, TokenVault
from dashtam.core.database import create_session_factory
from dashtam.core.state import AppResources
from dashtam.models.provider import ProviderToken
from dashtam.providers.errors import ReauthRequired
from dashtam.services.connections.rotation import pending_rotation_count, rotate_keys
from dashtam.services.connections.tokens import TOKENS_TABLE, TokenManager
from tests.integration.connections.harness import Rig


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def _with_keys(rig_resources: AppResources, keys: str) -> AppResources:
    """The same database and KV store under another ENCRYPTION_KEYS value."""
    settings = rig_resources.settings.model_copy(update={})
    vault = TokenVault.from_setting(keys)
    resources = AppResources(
        settings=settings,
        engine=rig_resources.engine,
        session_factory=create_session_factory(rig_resources.engine),
        kv=rig_resources.kv,
        extras={"vault": vault, "providers": rig_resources.extras["providers"]},
    )
    return resources


class TestAtRest:
    async def test_raw_rows_hold_no_plaintext_token(self, connections: Rig) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        snapshot = await TokenManager(connections.resources).snapshot(provider_id)
        secrets = [snapshot.access_token, snapshot.refresh_token]
        assert all(secrets)

        dump = ""
        for table in ("provider_tokens", "providers", "oauth_states", "provider_audit_logs"):
            dump += str(await connections.sql(f"SELECT * FROM {table}"))  # noqa: S608

        for secret in secrets:
            assert secret is not None
            assert secret not in dump
            assert secret.rstrip("@") not in dump
        row = (await connections.sql("SELECT * FROM provider_tokens"))[0]
        assert row["access_token_encrypted"].startswith("v1.")
        assert (
            row["key_id"]
            == TokenVault.from_setting(
                connections.resources.settings.encryption_keys.get_secret_value()  # type: ignore[union-attr]
            ).active_key_id
        )

    async def test_tampered_ciphertext_fails_and_requires_reauthorization(
        self, connections: Rig
    ) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        row = (await connections.sql("SELECT id, access_token_encrypted FROM provider_tokens"))[0]
        ciphertext: str = row["access_token_encrypted"]
        flipped = ciphertext[:-2] + ("A" if ciphertext[-2] != "A" else "B") + ciphertext[-1]
        async with connections.resources.engine.begin() as conn:
            await conn.execute(update(ProviderToken).values(access_token_encrypted=flipped))

        with pytest.raises(ReauthRequired):
            await TokenManager(connections.resources).access_token(provider_id)

        status = await connections.sql("SELECT status FROM providers")
        assert status == [{"status": "reauth_required"}]

    async def test_ciphertext_swapped_between_rows_does_not_decrypt(self, connections: Rig) -> None:
        alice, bob = await connections.login(), await connections.login()
        alices = _uuid(await connections.connect(alice, "Alice", username="demo"))
        bobs = _uuid(await connections.connect(bob, "Bob", username="demo"))
        rows = {
            r["provider_id"]: r
            for r in await connections.sql(
                "SELECT id, provider_id, access_token_encrypted FROM provider_tokens"
            )
        }
        alice_row = next(r for k, r in rows.items() if str(k).replace("-", "") == alices.hex)
        async with connections.resources.engine.begin() as conn:
            await conn.execute(
                update(ProviderToken)
                .where(ProviderToken.provider_id == bobs)  # type: ignore[arg-type]
                .values(access_token_encrypted=alice_row["access_token_encrypted"])
            )

        with pytest.raises(ReauthRequired):
            await TokenManager(connections.resources).access_token(bobs)
        vault = TokenVault.from_setting(
            connections.resources.settings.encryption_keys.get_secret_value()  # type: ignore[union-attr]
        )
        with pytest.raises(DecryptionError):
            vault.decrypt(
                alice_row["access_token_encrypted"],
                table=TOKENS_TABLE,
                column="refresh_token_encrypted",
                row_id=str(uuid.UUID(str(alice_row["id"]))),
            )
        assert await TokenManager(connections.resources).access_token(alices)


class TestKeyRotation:
    async def test_rotation_is_resumable_and_keeps_every_token_readable(
        self, connections: Rig
    ) -> None:
        old_keys = connections.resources.settings.encryption_keys.get_secret_value()  # type: ignore[union-attr]
        providers = []
        for n in range(5):
            who = await connections.login()
            providers.append(_uuid(await connections.connect(who, f"P{n}")))
        before = {
            pid: (await TokenManager(connections.resources).snapshot(pid)).access_token
            for pid in providers
        }
        new_key = generate_encryption_key("k2")
        both = _with_keys(connections.resources, f"{old_keys},{new_key}")
        assert await pending_rotation_count(both) == 5

        class Interrupted(Exception):
            pass

        def crash_after_first_batch(visited: int) -> None:
            raise Interrupted

        with pytest.raises(Interrupted):
            await rotate_keys(both, batch_size=2, on_batch=crash_after_first_batch)
        assert await pending_rotation_count(both) == 3
        resumed = await rotate_keys(both, batch_size=2)

        assert resumed.rotated == 3
        assert resumed.failed == 0
        assert await pending_rotation_count(both) == 0
        key_ids = await connections.sql("SELECT DISTINCT key_id FROM provider_tokens")
        assert key_ids == [{"key_id": "k2"}]
        only_new = _with_keys(connections.resources, new_key)
        for pid in providers:
            assert (await TokenManager(only_new).snapshot(pid)).access_token == before[pid]
        again = await rotate_keys(both, batch_size=2)
        assert again.rotated == 0

    async def test_keys_rotate_command_reports_and_rotates(
        self, connections: Rig, monkeypatch: pytest.MonkeyPatch, tmp_root: Path
    ) -> None:
        who = await connections.login()
        provider_id = _uuid(await connections.connect(who))
        settings = connections.resources.settings
        old_keys = settings.encryption_keys.get_secret_value()  # type: ignore[union-attr]
        new_key = generate_encryption_key("k9")
        monkeypatch.setenv("ENVIRONMENT", "test")
        monkeypatch.setenv("DATABASE_URL", settings.effective_database_url)
        monkeypatch.setenv("SECRET_KEY", settings.secret_key.get_secret_value())  # type: ignore[union-attr]
        monkeypatch.setenv("ENCRYPTION_KEYS", f"{old_keys},{new_key}")
        monkeypatch.setenv("VAR_DIR", str(tmp_root / "var"))

        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["keys", "rotate", "--batch-size", "1"]
        )

        assert result.exit_code == 0, result.output
        assert "1 rotated" in result.output
        assert new_key.split(":", 1)[1] not in result.output
        rows = await connections.sql("SELECT key_id FROM provider_tokens")
        assert rows == [{"key_id": "k9"}]
        only_new = _with_keys(connections.resources, new_key)
        assert await TokenManager(only_new).access_token(provider_id)
        async with connections.resources.engine.connect() as conn:
            value = (
                await conn.execute(text("SELECT access_token_encrypted FROM provider_tokens"))
            ).scalar_one()
        assert value.startswith("v1.k9.")
