"""Clients for the AI providers pixhook calls: OpenAI-compatible HTTP APIs."""
