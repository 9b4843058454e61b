"""All tables. Importing this package registers every model on `SQLModel.metadata` (Alembic)."""

from dashtam.models.base import NAMING_CONVENTION, Timestamps, UUIDPrimaryKey

__all__ = ["NAMING_CONVENTION", "Timestamps", "UUIDPrimaryKey"]
