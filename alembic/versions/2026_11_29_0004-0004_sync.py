"""sync: provider notices (reauth warnings sent once per connection per login).

Revision ID: 0004_sync
Revises: 0003_financial
Create Date: 2026-11-29 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate renders AutoString)
from alembic import op

import dashtam.core.types  # noqa: F401  (autogenerate renders UTCDateTime / ExactDecimal)

revision: str = "0004_sync"
down_revision: str | None = "0003_financial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_notices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("episode", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sent_at", dashtam.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_provider_notices_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_notices")),
        sa.UniqueConstraint(
            "provider_id",
            "kind",
            "episode",
            name=op.f("uq_provider_notices_provider_id_kind_episode"),
        ),
    )


def downgrade() -> None:
    op.drop_table("provider_notices")
