"""financial: accounts, balance snapshots, positions, transactions, sync runs, change counters.

Revision ID: 0003_financial
Revises: 0002_providers
Create Date: 2026-11-29 10:04:41.455400
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate renders AutoString)
from alembic import op
from sqlalchemy.dialects import postgresql

import dashtam.core.types  # noqa: F401  (autogenerate renders UTCDateTime / ExactDecimal)

revision: str = "0003_financial"
down_revision: str | None = "0002_providers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "financial_change_counters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_financial_change_counters_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_financial_change_counters")),
        sa.UniqueConstraint("user_id", name=op.f("uq_financial_change_counters_user_id")),
    )
    op.create_table(
        "accounts",
        sa.Column("created_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("masked_number", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_accounts_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_accounts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint(
            "provider_id", "external_id", name=op.f("uq_accounts_provider_id_external_id")
        ),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_accounts_user_id_provider_id", ["user_id", "provider_id"], unique=False
        )

    op.create_table(
        "sync_runs",
        sa.Column("created_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("modified", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("error_message", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("window_start", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("window_end", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_sync_runs_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sync_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_runs_provider_id_created_at", ["provider_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_sync_runs_status_lease_expires_at", ["status", "lease_expires_at"], unique=False
        )
        batch_op.create_index(
            "ux_sync_runs_provider_id_active",
            ["provider_id"],
            unique=True,
            postgresql_where=sa.text("status IN ('queued', 'running')"),
            sqlite_where=sa.text("status IN ('queued', 'running')"),
        )

    op.create_table(
        "balance_snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("as_of", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("current", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True),
        sa.Column(
            "available", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True
        ),
        sa.Column("cash", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True),
        sa.Column(
            "buying_power", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True
        ),
        sa.Column(
            "liquidation_value",
            dashtam.core.types.ExactDecimal(precision=28, scale=8),
            nullable=True,
        ),
        sa.Column(
            "long_market_value",
            dashtam.core.types.ExactDecimal(precision=28, scale=8),
            nullable=True,
        ),
        sa.Column(
            "short_market_value",
            dashtam.core.types.ExactDecimal(precision=28, scale=8),
            nullable=True,
        ),
        sa.Column(
            "money_market_fund",
            dashtam.core.types.ExactDecimal(precision=28, scale=8),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_balance_snapshots_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_snapshots")),
    )
    with op.batch_alter_table("balance_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_balance_snapshots_account_id_as_of", ["account_id", "as_of"], unique=False
        )

    op.create_table(
        "positions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("position_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("symbol", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("cusip", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("asset_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column(
            "quantity", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=False
        ),
        sa.Column(
            "average_price", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True
        ),
        sa.Column(
            "market_value", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=False
        ),
        sa.Column(
            "cost_basis", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True
        ),
        sa.Column(
            "unrealized_pl", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True
        ),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("as_of", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_positions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_positions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint(
            "account_id", "position_key", name=op.f("uq_positions_account_id_position_key")
        ),
    )
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.create_index("ix_positions_user_id_symbol", ["user_id", "symbol"], unique=False)

    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("posted_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=True),
        sa.Column("settlement_date", sa.Date(), nullable=True),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("subtype", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("amount", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("symbol", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column(
            "quantity", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True
        ),
        sa.Column("price", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=True),
        sa.Column("fees", dashtam.core.types.ExactDecimal(precision=28, scale=8), nullable=False),
        sa.Column(
            "raw",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("first_seen_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("removed_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_transactions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_transactions_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_transactions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "account_id", "external_id", name=op.f("uq_transactions_account_id_external_id")
        ),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transactions_account_id_posted_at_id",
            ["account_id", "posted_at", "id"],
            unique=False,
            postgresql_where=sa.text("removed_at IS NULL"),
            sqlite_where=sa.text("removed_at IS NULL"),
        )
        batch_op.create_index(
            "ix_transactions_user_id_change_seq", ["user_id", "change_seq"], unique=True
        )
        batch_op.create_index(
            "ix_transactions_user_id_posted_at_id",
            ["user_id", "posted_at", "id"],
            unique=False,
            postgresql_where=sa.text("removed_at IS NULL"),
            sqlite_where=sa.text("removed_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_transactions_user_id_posted_at_id",
            postgresql_where=sa.text("removed_at IS NULL"),
            sqlite_where=sa.text("removed_at IS NULL"),
        )
        batch_op.drop_index("ix_transactions_user_id_change_seq")
        batch_op.drop_index(
            "ix_transactions_account_id_posted_at_id",
            postgresql_where=sa.text("removed_at IS NULL"),
            sqlite_where=sa.text("removed_at IS NULL"),
        )

    op.drop_table("transactions")
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.drop_index("ix_positions_user_id_symbol")

    op.drop_table("positions")
    with op.batch_alter_table("balance_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_snapshots_account_id_as_of")

    op.drop_table("balance_snapshots")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_sync_runs_provider_id_active",
            postgresql_where=sa.text("status IN ('queued', 'running')"),
            sqlite_where=sa.text("status IN ('queued', 'running')"),
        )
        batch_op.drop_index("ix_sync_runs_status_lease_expires_at")
        batch_op.drop_index("ix_sync_runs_provider_id_created_at")

    op.drop_table("sync_runs")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_accounts_user_id_provider_id")

    op.drop_table("accounts")
    op.drop_table("financial_change_counters")
