"""The fields of `POST` and `PATCH /v1/endpoints`, each checked, each error naming its field."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.config import Settings
from service.errors import InvalidInput
from service.events import WEBHOOK_EVENT_TYPES
from service.submission import parse_url
from service.tasks import JOB_TYPES
from service.unknown_fields import refuse_unknown_fields
from webhooks.endpoints import KINDS, EndpointKind
from webhooks.slack import InvalidTemplate, check_templates, is_slack_url

FIELDS = frozenset(
    {"url", "kind", "description", "event_types", "filter", "enabled", "headers", "templates"}
)
_FILTER_FIELDS = ("job_types", "metadata")
MAX_DESCRIPTION_CHARS = 500
MAX_EVENT_TYPES = 50
MAX_FILTER_VALUES = 20
MAX_HEADERS = 20
MAX_HEADER_VALUE_CHARS = 4096
# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
# Visible ASCII, spaces and tabs, nothing that could end the header line.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Headers pixhook sets itself, or that belong to the connection: an endpoint cannot set them.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "user-agent",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_RESERVED_PREFIXES = ("webhook-", "proxy-")


@dataclass(frozen=True)
class EndpointFields:
    """What a request asked to set; absent fields are None (PATCH leaves them as they are)."""

    url: str | None = None
    kind: EndpointKind | None = None
    description: str | None = None
    event_types: tuple[str, ...] | None = None
    job_types: tuple[str, ...] | None = None
    metadata_filter: dict[str, Any] | None = None
    enabled: bool | None = None
    # name -> value, or None to remove that header (a JSON merge patch).
    headers: dict[str, str | None] | None = None
    templates: dict[str, dict[str, Any]] | None = None
    clear_templates: bool = False


def parse_endpoint_fields(body: Any, settings: Settings, *, creating: bool) -> EndpointFields:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    refuse_unknown_fields(body, FIELDS)
    if creating and "url" not in body:
        raise InvalidInput("url is required", field="url")
    filter_ = _filter(body["filter"]) if "filter" in body else None
    templates = body.get("templates")
    return EndpointFields(
        url=parse_url(body["url"], "url", settings) if "url" in body else None,
        kind=_kind(body["kind"]) if "kind" in body else None,
        description=_description(body["description"]) if "description" in body else None,
        event_types=_event_types(body["event_types"]) if "event_types" in body else None,
        job_types=None if filter_ is None else filter_[0],
        metadata_filter=None if filter_ is None else filter_[1],
        enabled=_enabled(body["enabled"]) if "enabled" in body else None,
        headers=_headers(body["headers"], creating) if "headers" in body else None,
        templates=None if templates is None else _templates(templates),
        clear_templates="templates" in body and templates is None,
    )


def resolved_kind(fields: EndpointFields, url: str, current: EndpointKind | None) -> EndpointKind:
    """The kind asked for; else the current one; else Slack for a Slack webhook URL."""
    if fields.kind is not None:
        return fields.kind
    if current is not None:
        return current
    return "slack" if is_slack_url(url) else "webhook"


def _kind(value: Any) -> EndpointKind:
    if value not in KINDS:
        raise InvalidInput(f"kind must be one of: {', '.join(KINDS)}", field="kind")
    kind: EndpointKind = value
    return kind


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(
            f"description must be a string of at most {MAX_DESCRIPTION_CHARS} characters",
            field="description",
        )
    return value


def _event_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_EVENT_TYPES:
        raise InvalidInput(
            f"event_types must be a list of 1 to {MAX_EVENT_TYPES} event types or patterns "
            'such as "job.*"',
            field="event_types",
        )
    for n, pattern in enumerate(value):
        # A pattern that matches nothing is a typo ("job.complete"), not a subscription.
        if not isinstance(pattern, str) or not any(
            fnmatch.fnmatchcase(event_type, pattern) for event_type in WEBHOOK_EVENT_TYPES
        ):
            raise InvalidInput(
                f"{pattern!r} matches no event type; they are: {', '.join(WEBHOOK_EVENT_TYPES)}",
                code="UNKNOWN_EVENT_TYPE",
                field=f"event_types[{n}]",
            )
    return tuple(dict.fromkeys(value))


def _filter(value: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    if not isinstance(value, dict):
        raise InvalidInput(
            'filter must be an object with "job_types" and/or "metadata"', field="filter"
        )
    refuse_unknown_fields(value, _FILTER_FIELDS, "filter")
    job_types = value.get("job_types", [])
    if not isinstance(job_types, list) or len(job_types) > MAX_FILTER_VALUES:
        raise InvalidInput("filter.job_types must be a list of job types", field="filter.job_types")
    for n, job_type in enumerate(job_types):
        if not isinstance(job_type, str) or job_type not in JOB_TYPES:
            raise InvalidInput(
                f"job types are: {', '.join(sorted(JOB_TYPES))}",
                code="UNKNOWN_JOB_TYPE",
                field=f"filter.job_types[{n}]",
            )
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict) or len(metadata) > MAX_FILTER_VALUES:
        raise InvalidInput(
            f"filter.metadata must be an object of at most {MAX_FILTER_VALUES} keys",
            field="filter.metadata",
        )
    for key, wanted in metadata.items():
        if not isinstance(wanted, str | int | float | bool):
            raise InvalidInput(
                "a metadata filter value must be a string, number or boolean the job's "
                "metadata value must equal",
                field=f"filter.metadata.{key}",
            )
    return tuple(dict.fromkeys(job_types)), metadata


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    return value


def _headers(value: Any, creating: bool) -> dict[str, str | None]:
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise InvalidInput(
            f"headers must be an object of at most {MAX_HEADERS} header names and values",
            field="headers",
        )
    headers: dict[str, str | None] = {}
    for name, header_value in value.items():
        field = f"headers.{name}"
        lowered = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidInput(
                f"{name!r} is not an HTTP header name", code="INVALID_HEADER", field=field
            )
        if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
            raise InvalidInput(
                f"{name} is set by pixhook and cannot be overridden",
                code="INVALID_HEADER",
                field=field,
            )
        if header_value is None and not creating:
            headers[name] = None
            continue
        if (
            not isinstance(header_value, str)
            or len(header_value) > MAX_HEADER_VALUE_CHARS
            or not _HEADER_VALUE.fullmatch(header_value)
        ):
            raise InvalidInput(
                f"a header value must be printable ASCII of at most {MAX_HEADER_VALUE_CHARS} "
                "characters (null removes a header when updating)",
                code="INVALID_HEADER",
                field=field,
            )
        headers[name] = header_value
    return headers


def _templates(value: Any) -> dict[str, dict[str, Any]]:
    try:
        return check_templates(value)
    except InvalidTemplate as exc:
        raise InvalidInput(
            exc.message, code="INVALID_TEMPLATE", field=f"templates.{exc.field}".rstrip(".")
        ) from exc


def merged_headers(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """A JSON merge patch over header names, compared without case (as HTTP does)."""
    merged = dict(current)
    for name, value in changes.items():
        for existing in [n for n in merged if n.lower() == name.lower()]:
            del merged[existing]
        if value is not None:
            merged[name] = value
    if len(merged) > MAX_HEADERS:
        raise InvalidInput(f"an endpoint has at most {MAX_HEADERS} headers", field="headers")
    return merged
