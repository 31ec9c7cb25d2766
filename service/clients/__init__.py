"""API clients: their keys, secrets and limits."""
