"""Endpoint secrets and headers are sealed at rest: what a Redis dump shows, and key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from service.config import ConfigError, Settings
from webhooks import InvalidSealKey, SealBroken, Sealer


def new_key() -> str:
    return Fernet.generate_key().decode()


def test_a_sealed_value_shows_nothing_and_opens_again():
    sealer = Sealer([new_key()])

    sealed = sealer.seal("Bearer cms-token")

    assert "cms-token" not in sealed
    assert sealer.open(sealed) == "Bearer cms-token"
    assert sealer.seal("Bearer cms-token") != sealed  # a fresh IV each time


def test_a_rotated_key_still_opens_what_the_old_one_sealed():
    old, new = new_key(), new_key()
    sealed_before = Sealer([old]).seal("whsec_x")

    rotated = Sealer([new, old])

    assert rotated.open(sealed_before) == "whsec_x"
    with pytest.raises(SealBroken):
        Sealer([old]).open(rotated.seal("whsec_y"))  # the first key seals


def test_a_value_no_key_opens_is_broken_not_garbage():
    with pytest.raises(SealBroken):
        Sealer([new_key()]).open(Sealer([new_key()]).seal("secret"))


def test_a_key_derived_from_the_secret_key_is_stable_and_its_own():
    one, same, other = (Sealer.derived_from(k) for k in ("k" * 32, "k" * 32, "j" * 32))

    assert same.open(one.seal("x")) == "x"
    with pytest.raises(SealBroken):
        other.open(one.seal("x"))


@pytest.mark.parametrize("keys", [[], ["not-a-key"], [new_key(), "short"]])
def test_unusable_keys_are_refused(keys):
    with pytest.raises(InvalidSealKey):
        Sealer(keys)


def test_config_names_the_variable_of_a_bad_key():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"PIXHOOK_ENCRYPTION_KEYS": f"{new_key()},nope"})

    assert caught.value.variable == "PIXHOOK_ENCRYPTION_KEYS"


def test_config_reads_several_keys_first_one_sealing():
    first, second = new_key(), new_key()

    settings = Settings.from_env({"PIXHOOK_ENCRYPTION_KEYS": f" {first} , {second} "})

    assert settings.endpoints.encryption_keys == (first, second)
    assert Sealer([first]).open(settings.sealer.seal("x")) == "x"
