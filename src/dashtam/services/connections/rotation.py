"""`dashtam keys rotate`: re-encrypt every stored institution secret with the newest vault key.

Resumable by construction: rows are visited in id order in batches, each batch committed on
its own, and rows already on the newest key are never selected again — so an interrupted run
simply continues where it stopped when started again. Each row is swapped only if it did not
change since it was read, so a concurrent token refresh is never overwritten with older tokens.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from dashtam.core.crypto import DecryptionError, TokenVault
from dashtam.core.database import session_scope
from dashtam.core.logging import log_event
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.services.connections import repository as repo
from dashtam.services.connections.authorization import STATES_TABLE, VERIFIER_COLUMN
from dashtam.services.connections.context import vault_of
from dashtam.services.connections.tokens import ACCESS_COLUMN, REFRESH_COLUMN, TOKENS_TABLE

logger = logging.getLogger("dashtam.connections.rotation")

DEFAULT_BATCH_SIZE = 100


@dataclass
class RotationReport:
    """What one run did."""

    key_id: str
    rotated: int = 0
    #: Rows that changed under us (a refresh wrote newer tokens, already on the newest key).
    skipped: int = 0
    #: Rows that cannot be decrypted with any configured key (left as they are, logged).
    failed: int = 0
    states_rotated: int = 0


async def pending_rotation_count(resources: AppResources) -> int:
    """How many token rows are not on the newest key yet."""
    vault = vault_of(resources)
    async with session_scope(resources.session_factory) as session:
        return await repo.count_token_rows_needing_rotation(
            session, active_key_id=vault.active_key_id
        )


def _reencrypt(vault: TokenVault, value: str, *, table: str, column: str, row_id: str) -> str:
    return vault.reencrypt(value, table=table, column=column, row_id=row_id)


async def rotate_keys(
    resources: AppResources,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Re-encrypt every token row (and live PKCE verifier) with the active key.

    Args:
        resources: Database and vault.
        batch_size: Rows per committed batch.
        on_batch: Called after each committed batch with the number of rows visited.

    Returns:
        Counts of rotated, skipped and failed rows.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    vault = vault_of(resources)
    report = RotationReport(key_id=vault.active_key_id)
    after: uuid.UUID | None = None
    while True:
        async with session_scope(resources.session_factory) as session:
            rows = await repo.token_rows_needing_rotation(
                session, active_key_id=vault.active_key_id, after=after, limit=batch_size
            )
            for row in rows:
                bound = str(row.id)
                try:
                    access = _reencrypt(
                        vault,
                        row.access_token_encrypted,
                        table=TOKENS_TABLE,
                        column=ACCESS_COLUMN,
                        row_id=bound,
                    )
                    refresh = (
                        _reencrypt(
                            vault,
                            row.refresh_token_encrypted,
                            table=TOKENS_TABLE,
                            column=REFRESH_COLUMN,
                            row_id=bound,
                        )
                        if row.refresh_token_encrypted is not None
                        else None
                    )
                except DecryptionError:
                    report.failed += 1
                    log_event(
                        logger,
                        "keys.rotate.undecryptable",
                        logging.ERROR,
                        provider_id=str(row.provider_id),
                        key_id=row.key_id,
                    )
                    continue
                swapped = await repo.update_tokens_if_unchanged(
                    session,
                    row_id=row.id,
                    expected_access_ciphertext=row.access_token_encrypted,
                    values={
                        "access_token_encrypted": access,
                        "refresh_token_encrypted": refresh,
                        "key_id": vault.active_key_id,
                    },
                )
                if swapped:
                    report.rotated += 1
                else:
                    report.skipped += 1
            if rows:
                after = rows[-1].id
        if not rows:
            break
        if on_batch is not None:
            on_batch(len(rows))
    report.states_rotated = await _rotate_states(resources, vault, batch_size)
    log_event(
        logger,
        "keys.rotate.finished",
        key_id=report.key_id,
        rotated=report.rotated,
        skipped=report.skipped,
        failed=report.failed,
        states_rotated=report.states_rotated,
    )
    return report


async def _rotate_states(resources: AppResources, vault: TokenVault, batch_size: int) -> int:
    """Re-encrypt the PKCE verifiers of authorizations still in flight (few, short-lived)."""
    rotated = 0
    after: uuid.UUID | None = None
    while True:
        async with session_scope(resources.session_factory) as session:
            states = await repo.live_states_with_verifier(
                session, now=utcnow(), after=after, limit=batch_size
            )
            for state in states:
                current = state.code_verifier_encrypted
                if current is None or not vault.needs_rotation(current):
                    continue
                try:
                    fresh = _reencrypt(
                        vault,
                        current,
                        table=STATES_TABLE,
                        column=VERIFIER_COLUMN,
                        row_id=str(state.id),
                    )
                except DecryptionError:
                    continue
                if await repo.update_state_verifier_if_unchanged(
                    session, state_id=state.id, expected=current, ciphertext=fresh
                ):
                    rotated += 1
            if states:
                after = states[-1].id
        if not states:
            return rotated
