"""Settings from the environment: defaults, parsing, and clear errors."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from service.config import ConfigError, Settings, declarations, warn_of_unknown_variables

KEY = {"PIXHOOK_SECRET_KEY": "k" * 32}


def test_defaults_apply_when_nothing_is_set():
    settings = Settings.from_env(KEY)

    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.deliveries.retry_schedule.delays_s[:2] == (5.0, 300.0)


def test_durations_and_schedules_are_parsed():
    settings = Settings.from_env(
        KEY | {"PIXHOOK_JOB_TIMEOUT": "2m", "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "1s, 250ms"}
    )

    assert settings.jobs.timeout_s == 120
    assert settings.deliveries.retry_schedule.delays_s == (1.0, 0.25)


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


def test_no_secret_appears_in_repr():
    secrets = {
        "PIXHOOK_SECRET_KEY": "super-secret-value-123",
        "PIXHOOK_OPENAI_API_KEY": "sk-not-for-logs",
        "PIXHOOK_CONSOLE_PASSWORD": "operator-password",
        "PIXHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    shown = repr(Settings.from_env(secrets))

    assert [value for value in secrets.values() if value in shown] == []


def test_host_port_and_log_format_are_settings():
    settings = Settings.from_env(
        {"PIXHOOK_HOST": "0.0.0.0", "PIXHOOK_PORT": "9000", "PIXHOOK_LOG_FORMAT": "text"}
    )

    assert (settings.api.host, settings.api.port, settings.logging.format) == (
        "0.0.0.0",
        9000,
        "text",
    )


def test_a_misspelled_variable_is_logged_with_the_likely_name(caplog: pytest.LogCaptureFixture):
    warn_of_unknown_variables(
        {"PIXHOOK_JOB_TIMOUT": "5m", "PIXHOOK_JOB_TIMEOUT": "5m", "HOME": "/"}
    )

    assert [r.getMessage() for r in caplog.records] == [
        "PIXHOOK_JOB_TIMOUT is set but no setting reads it; did you mean PIXHOOK_JOB_TIMEOUT?"
    ]


def test_an_unknown_variable_unlike_any_setting_is_logged_without_a_guess(
    caplog: pytest.LogCaptureFixture,
):
    warn_of_unknown_variables({"PIXHOOK_ZZZ": "1"})

    assert [r.getMessage() for r in caplog.records] == [
        "PIXHOOK_ZZZ is set but no setting reads it"
    ]


def test_every_variable_is_declared_once():
    variables = [declared.variable for _, declared in declarations()]

    assert len(variables) == len(set(variables))


def test_provider_keys_come_comma_separated_or_one_per_line_from_a_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# rotated 2026-12-01\nsk-ant-one\n\nsk-ant-two\nsk-ant-one\n")

    from_file = Settings.from_env({"PIXHOOK_ANTHROPIC_API_KEYS": f"@{keys_file}"})
    listed = Settings.from_env(
        {"PIXHOOK_OPENAI_API_KEY": "sk-a", "PIXHOOK_OPENAI_API_KEYS": "sk-b, sk-a,sk-c"}
    )

    assert from_file.providers.keys("anthropic") == ("sk-ant-one", "sk-ant-two")
    assert listed.providers.keys("openai") == ("sk-a", "sk-b", "sk-c")
    assert "sk-" not in repr(listed.providers)


def test_anthropic_counts_as_configured_once_it_has_a_key():
    assert Settings().providers.base_url("anthropic") == ""
    with_key = Settings.from_env({"PIXHOOK_ANTHROPIC_API_KEYS": "sk-ant-one"})
    assert with_key.providers.base_url("anthropic") == "https://api.anthropic.com"
