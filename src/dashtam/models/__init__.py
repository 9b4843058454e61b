"""All tables. Importing this package registers every model on `SQLModel.metadata` (Alembic)."""

from dashtam.models.auth import (
    AuthSession,
    EmailVerificationToken,
    PasswordResetToken,
    RefreshToken,
    SecurityEvent,
)
from dashtam.models.base import NAMING_CONVENTION, Timestamps, UUIDPrimaryKey
from dashtam.models.financial import (
    Account,
    BalanceSnapshot,
    FinancialChangeCounter,
    Position,
    SyncRun,
    Transaction,
)
from dashtam.models.provider import (
    OAuthState,
    Provider,
    ProviderAuditLog,
    ProviderToken,
)
from dashtam.models.sync import ProviderNotice
from dashtam.models.user import User

__all__ = [
    "AuthSession",
    "EmailVerificationToken",
    "PasswordResetToken",
    "RefreshToken",
    "SecurityEvent",
    "Account",
    "BalanceSnapshot",
    "FinancialChangeCounter",
    "Position",
    "SyncRun",
    "Transaction",
    "OAuthState",
    "Provider",
    "ProviderAuditLog",
    "ProviderToken",
    "ProviderNotice",
    "User",
    "NAMING_CONVENTION",
    "Timestamps",
    "UUIDPrimaryKey",
]
