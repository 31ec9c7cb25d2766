"""The HTTP API: authentication and rate-limit middleware, request validation, the OpenAPI
document, and the routes."""
