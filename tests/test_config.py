"""Settings from the environment: defaults, parsing, and clear errors."""

from __future__ import annotations

import pytest

from service.config import ConfigError, Settings

KEY = {"PIXHOOK_SECRET_KEY": "k" * 32}


def test_defaults_apply_when_nothing_is_set():
    settings = Settings.from_env(KEY)

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.webhook_retry_schedule.delays_s[:2] == (5.0, 300.0)


def test_durations_and_schedules_are_parsed():
    settings = Settings.from_env(
        KEY | {"PIXHOOK_JOB_TIMEOUT": "2m", "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "1s, 250ms"}
    )

    assert settings.job_timeout_s == 120
    assert settings.webhook_retry_schedule.delays_s == (1.0, 0.25)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIXHOOK_MAX_REQUEST_BYTES", "lots"),
        ("PIXHOOK_JOB_CONCURRENCY", "0"),
        ("PIXHOOK_JOB_TIMEOUT", "-5"),
        ("PIXHOOK_WEBHOOK_RETRY_SCHEDULE", "5s,soon"),
        ("PIXHOOK_STORAGE", "ftp://files"),
        ("PIXHOOK_WEBP_EFFORT", "7"),
    ],
)
def test_bad_value_names_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(KEY | {variable: value})

    assert caught.value.variable == variable


def test_secret_key_is_required_to_serve():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({}).require_secret_key()

    assert caught.value.variable == "PIXHOOK_SECRET_KEY"


def test_secret_key_never_appears_in_repr():
    settings = Settings.from_env({"PIXHOOK_SECRET_KEY": "super-secret-value-123"})

    assert "super-secret-value-123" not in repr(settings)
