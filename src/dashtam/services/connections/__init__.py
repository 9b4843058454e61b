"""Institution connections: providers, their authorization, token lifecycle and audit trail."""

from dashtam.services.connections.tokens import TokenManager

__all__ = ["TokenManager"]
