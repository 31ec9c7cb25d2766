"""`webhooks` shows one face: its public names are exactly those `__all__` lists, and each is the
library's own (as httpx's tests/test_exported_members.py pins httpx's)."""

from __future__ import annotations

import inspect
from types import ModuleType

import webhooks

# Values rather than classes or functions: they have no `__module__` to check, so each is named.
CONSTANTS_AND_ALIASES = {
    "DEFAULT_TOLERANCE_S",
    "DNS_FAILURE",
    "ENDPOINT_DISABLED",
    "FORBIDDEN_ADDRESS",
    "HISTORY_TTL_S",
    "KINDS",
    "STATUSES",
    "DeliveryStatus",
    "EndpointKind",
    "Outcome",
}


def test_all_lists_every_public_name_of_the_package_sorted() -> None:
    public = [
        name
        for name, member in vars(webhooks).items()
        if not name.startswith("_") and not isinstance(member, ModuleType)
    ]
    assert webhooks.__all__ == sorted(public)


def test_every_exported_class_and_function_is_the_librarys_own() -> None:
    for name in webhooks.__all__:
        member = getattr(webhooks, name)
        if name in CONSTANTS_AND_ALIASES:
            assert not (inspect.isclass(member) or inspect.isfunction(member)), name
            continue
        assert inspect.isclass(member) or inspect.isfunction(member), name
        assert member.__module__.startswith("webhooks"), name


def test_every_library_exception_derives_from_webhook_error() -> None:
    exceptions = [
        member
        for member in map(vars(webhooks).get, webhooks.__all__)
        if inspect.isclass(member) and issubclass(member, BaseException)
    ]
    assert len(exceptions) > 1
    assert all(issubclass(exc, webhooks.WebhookError) for exc in exceptions)
