"""The operator console at /console: server-rendered pages over the same stores the API uses."""
