"""Our signatures interoperate with the standardwebhooks reference library, both ways."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from webhooks import (
    InvalidSecret,
    InvalidWebhook,
    generate_secret,
    secret_key,
    verify,
    webhook_headers,
)

BODY = b'{"type":"job.completed","id":"evt_1","data":{"x":"\xc3\xa9"}}'


def headers_for(
    secrets: list[str], body: bytes = BODY, timestamp: int | None = None
) -> dict[str, str]:
    return webhook_headers(secrets, "evt_1", timestamp or int(time.time()), body)


def test_reference_library_verifies_our_signature():
    secret = generate_secret()

    payload = Webhook(secret).verify(BODY, headers_for([secret]))

    assert payload["id"] == "evt_1"


def test_we_verify_the_reference_librarys_signature():
    secret = generate_secret()
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("evt_1", now, BODY.decode())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }

    assert verify(headers, BODY, secret)["type"] == "job.completed"


def test_both_secrets_verify_during_a_rotation():
    old, new = generate_secret(), generate_secret()
    headers = headers_for([new, old])

    assert Webhook(old).verify(BODY, headers)
    assert Webhook(new).verify(BODY, headers)
    assert len(headers["webhook-signature"].split(" ")) == 2


def test_secret_is_whsec_and_32_random_bytes():
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 32
    assert secret != generate_secret()


def test_tampered_body_fails():
    secret = generate_secret()

    with pytest.raises(InvalidWebhook) as caught:
        verify(headers_for([secret]), BODY + b" ", secret)

    assert caught.value.reason == "bad_signature"


def test_a_signed_body_nested_too_deeply_to_parse_is_a_bad_body():
    secret, body = generate_secret(), b"[" * 100_000 + b"]" * 100_000

    with pytest.raises(InvalidWebhook) as caught:
        verify(headers_for([secret], body), body, secret)

    assert caught.value.reason == "bad_body"


def test_stale_timestamp_fails():
    secret = generate_secret()
    headers = headers_for([secret], timestamp=int(time.time()) - 3600)

    with pytest.raises(InvalidWebhook) as caught:
        verify(headers, BODY, secret)

    assert caught.value.reason == "stale_timestamp"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": ""}, "missing_header"),
        ({"webhook-timestamp": "yesterday"}, "bad_timestamp"),
        ({"webhook-signature": "garbage"}, "bad_signature"),
        ({"webhook-signature": "v1,"}, "bad_signature"),
        ({"webhook-signature": "v1,é"}, "bad_signature"),
        ({"webhook-signature": "v2," + base64.b64encode(b"x" * 32).decode()}, "bad_signature"),
    ],
)
def test_malformed_headers_are_verification_failures_not_crashes(change, reason):
    secret = generate_secret()
    headers = headers_for([secret]) | change

    with pytest.raises(InvalidWebhook) as caught:
        verify(headers, BODY, secret)

    assert caught.value.reason == reason


def test_header_names_are_case_insensitive():
    secret = generate_secret()
    headers = {k.upper(): v for k, v in headers_for([secret]).items()}

    assert verify(headers, BODY, secret)["id"] == "evt_1"


@pytest.mark.parametrize("secret", ["whsec_***", "whsec_"])
def test_unusable_secret_is_refused(secret):
    with pytest.raises(InvalidSecret):
        headers_for([secret])
