"""Institution clients: the provider protocol, the registry, and one package per institution."""
