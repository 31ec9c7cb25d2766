"""The settings every test stack runs with, and that stacks of their own start from."""

# A short retry schedule (3 attempts) and tight limits, so the suite exercises them quickly.
STACK_ENV = {
    "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "300ms,300ms",
    "PIXHOOK_WEBHOOK_ATTEMPT_TIMEOUT": "3s",
    "PIXHOOK_WEBHOOK_THROTTLED_BACKOFF": "300ms",
    # Only the receivers' own address: `localhost` (which is also ::1) and the rest stay refused.
    "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32",
    # Every test receiver shares 127.0.0.1; the breaker has its own stack in test_circuit.py.
    "PIXHOOK_CIRCUIT_THRESHOLD": "100000",
    # Re-queuing other tests' dead deliveries would add requests to their receivers mid-test.
    "PIXHOOK_DLQ_REDRIVE_BATCH": "0",
    "PIXHOOK_MAX_REQUEST_BYTES": "2000000",
    "PIXHOOK_MAX_IMAGE_BYTES": "1500000",
    "PIXHOOK_MAX_IMAGE_PIXELS": "30000000",
    # Seconds, not Svix's days: tests/test_endpoints.py watches an endpoint being disabled.
    "PIXHOOK_ENDPOINT_DISABLE_AFTER": "2s",
    "PIXHOOK_CONSOLE_PASSWORD": "console-password-for-tests",
}
