"""Charles Schwab (Trader API, individual): OAuth client and account-data calls."""

from dashtam.providers.schwab.client import SchwabProvider

__all__ = ["SchwabProvider"]
