"""providers: institution connections, encrypted tokens, OAuth states and the audit trail.

Token columns hold token-vault ciphertext only; no key material is referenced here.

Revision ID: 0002_providers
Revises: 0001_auth
Create Date: 2026-11-29 10:02:32.111854
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate renders AutoString)
from alembic import op
from sqlalchemy.dialects import postgresql

import dashtam.core.types  # noqa: F401  (autogenerate renders UTCDateTime / ExactDecimal)

revision: str = "0002_providers"
down_revision: str | None = "0001_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_audit_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("ip_address", sqlmodel.sql.sqltypes.AutoString(length=45), nullable=True),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("created_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_provider_audit_logs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_audit_logs")),
    )
    with op.batch_alter_table("provider_audit_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_audit_logs_provider_id_created_at",
            ["provider_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_provider_audit_logs_user_id_created_at", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "providers",
        sa.Column("created_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider_key", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("alias", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("connected_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_sync_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_providers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
        sa.UniqueConstraint("user_id", "alias", name=op.f("uq_providers_user_id_alias")),
    )
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_providers_user_id_created_at", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "oauth_states",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("state_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("code_verifier_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_oauth_states_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_states_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_states")),
    )
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_oauth_states_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_oauth_states_provider_id", ["provider_id"], unique=False)
        batch_op.create_index("ix_oauth_states_state_hash", ["state_hash"], unique=True)

    op.create_table(
        "provider_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("access_token_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("refresh_token_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("token_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column(
            "access_expires_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "refresh_expires_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("issued_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresh_count", sa.Integer(), nullable=False),
        sa.Column("created_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_provider_tokens_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_tokens")),
        sa.UniqueConstraint("provider_id", name=op.f("uq_provider_tokens_provider_id")),
    )


def downgrade() -> None:
    op.drop_table("provider_tokens")
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.drop_index("ix_oauth_states_state_hash")
        batch_op.drop_index("ix_oauth_states_provider_id")
        batch_op.drop_index("ix_oauth_states_expires_at")

    op.drop_table("oauth_states")
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_index("ix_providers_user_id_created_at")

    op.drop_table("providers")
    with op.batch_alter_table("provider_audit_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_audit_logs_user_id_created_at")
        batch_op.drop_index("ix_provider_audit_logs_provider_id_created_at")

    op.drop_table("provider_audit_logs")
