"""The library's exceptions share one root, keep the base callers catch, and carry evidence."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from webhooks import (
    InvalidDuration,
    InvalidNetwork,
    InvalidSealKey,
    SealBroken,
    Sealer,
    UrlPolicy,
    WebhookError,
    parse_duration,
)


def test_a_malformed_duration_names_its_text_and_is_still_a_value_error() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5 minutes")
    assert isinstance(caught.value, InvalidDuration)
    assert isinstance(caught.value, WebhookError)
    assert caught.value.text == "5 minutes"


def test_a_bad_allow_list_entry_names_the_entry() -> None:
    with pytest.raises(InvalidNetwork) as caught:
        UrlPolicy.parse("10.0.0.0/8,not-a-network")
    assert caught.value.entry == "not-a-network"


def test_a_bad_sealing_key_says_which_one() -> None:
    with pytest.raises(InvalidSealKey) as caught:
        Sealer([Fernet.generate_key().decode(), "short"])
    assert caught.value.index == 1


def test_a_value_no_key_opens_says_how_many_keys_were_tried() -> None:
    sealed = Sealer([Fernet.generate_key().decode()]).seal("secret")
    other = Sealer([Fernet.generate_key().decode(), Fernet.generate_key().decode()])
    with pytest.raises(SealBroken) as caught:
        other.open(sealed)
    assert caught.value.keys == 2
