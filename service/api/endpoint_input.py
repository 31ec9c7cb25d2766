"""The fields of `POST` and `PATCH /v1/endpoints`, each checked, each error naming its field."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from service.config import Settings
from service.errors import InvalidInput
from service.notify import SLACK_WORDING
from service.publishing import WEBHOOK_EVENT_TYPES
from service.shapes.fields import INVALID_INPUT, DocumentedAs, OneOf
from service.shapes.validation import REQUEST, validated
from service.submission import Url, parse_url
from service.tasks import JOB_TYPES
from webhooks import EndpointKind, InvalidTemplate, check_templates, is_slack_url

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


def _event_pattern(value: str) -> str:
    # A pattern that matches nothing is a typo ("job.complete"), not a subscription.
    if not any(fnmatch.fnmatchcase(event_type, value) for event_type in WEBHOOK_EVENT_TYPES):
        raise PydanticCustomError(
            "UNKNOWN_EVENT_TYPE",
            f"{value!r} matches no event type; they are: {', '.join(WEBHOOK_EVENT_TYPES)}",
        )
    return value


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise PydanticCustomError(
            INVALID_INPUT,
            "a metadata filter value must be a string, number or boolean the job's metadata "
            "value must equal",
        )
    return value


EventPattern = Annotated[
    str,
    AfterValidator(_event_pattern),
    WithJsonSchema({"enum": [*WEBHOOK_EVENT_TYPES, "*", "job.*", "batch.*", "endpoint.*"]}),
]
Scalar = Annotated[
    Any, AfterValidator(_scalar), WithJsonSchema({"type": ["string", "number", "boolean"]})
]
# Checked after the model (`_headers`): names, reserved names and values answer INVALID_HEADER.
HeaderValue = Annotated[
    Any, WithJsonSchema({"type": "string", "maxLength": MAX_HEADER_VALUE_CHARS})
]
HeaderName = Annotated[str, WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"})]


class SlackMessage(BaseModel):
    """A Slack message for the events of one type or pattern: `text` and/or Block Kit `blocks`,
    with {placeholders} (docs/webhooks.md). The model refuses keys Slack messages do not have;
    `webhooks.slack.check_templates` checks the values (INVALID_TEMPLATE)."""

    model_config = REQUEST
    text: Annotated[Any, WithJsonSchema({"type": "string", "minLength": 1})] = None
    blocks: Annotated[
        Any, WithJsonSchema({"type": "array", "minItems": 1, "items": {"type": "object"}})
    ] = None
    unfurl_links: Annotated[Any, WithJsonSchema({"type": "boolean"})] = None
    unfurl_media: Annotated[Any, WithJsonSchema({"type": "boolean"})] = None


class EventFilter(BaseModel):
    """Which events of the client's jobs the endpoint receives; empty lists match all."""

    model_config = REQUEST
    job_types: Annotated[
        list[Annotated[Any, OneOf(JOB_TYPES, code="UNKNOWN_JOB_TYPE")]],
        Field(max_length=MAX_FILTER_VALUES),
    ] = Field(default_factory=list)
    metadata: Annotated[
        dict[str, Scalar],
        Field(max_length=MAX_FILTER_VALUES, description="values the job's metadata must equal"),
    ] = Field(default_factory=dict)


# A PATCH field left out: None in Python, and no null on the wire (the model refuses one).
_ABSENT: Any = None


class EndpointChange(BaseModel):
    """`PATCH /v1/endpoints/{id}`: only the fields sent change; `headers` is a merge patch
    (null removes one), `templates: null` removes them."""

    model_config = REQUEST
    url: Url = _ABSENT
    kind: EndpointKind = _ABSENT
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] = _ABSENT
    event_types: Annotated[list[EventPattern], Field(min_length=1, max_length=MAX_EVENT_TYPES)] = (
        _ABSENT
    )
    filter: EventFilter = _ABSENT
    enabled: bool = _ABSENT
    headers: Annotated[dict[HeaderName, HeaderValue | None], Field(max_length=MAX_HEADERS)] = (
        _ABSENT
    )
    # Slack messages by event type or pattern (`job.failed`, `job.*`, `*`): docs/webhooks.md.
    templates: dict[str, Annotated[Any, DocumentedAs(SlackMessage)]] | None = None


class NewEndpoint(EndpointChange):
    """`POST /v1/endpoints`."""

    url: Url
    headers: Annotated[dict[HeaderName, HeaderValue], Field(max_length=MAX_HEADERS)] = _ABSENT


def parse_endpoint_fields(body: Any, settings: Settings, *, creating: bool) -> EndpointFields:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    model = NewEndpoint if creating else EndpointChange
    given = validated(model, body, settings)
    filter_ = given.filter
    return EndpointFields(
        url=None if given.url is None else parse_url(given.url, "url", settings),
        kind=given.kind,
        description=given.description,
        event_types=None if given.event_types is None else tuple(dict.fromkeys(given.event_types)),
        job_types=None if filter_ is None else tuple(dict.fromkeys(filter_.job_types)),
        metadata_filter=None if filter_ is None else dict(filter_.metadata),
        enabled=given.enabled,
        headers=None if given.headers is None else _headers(given.headers, creating),
        templates=None if given.templates is None else _templates(given.templates, settings),
        clear_templates="templates" in given.model_fields_set and given.templates is None,
    )


def resolved_kind(fields: EndpointFields, url: str, current: EndpointKind | None) -> EndpointKind:
    """The kind asked for; else the current one; else Slack for a Slack webhook URL."""
    if fields.kind is not None:
        return fields.kind
    if current is not None:
        return current
    return "slack" if is_slack_url(url) else "webhook"


def _headers(value: dict[str, Any], creating: bool) -> dict[str, str | None]:
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


def _templates(value: dict[str, Any], settings: Settings) -> dict[str, dict[str, Any]]:
    for key, message in value.items():
        if isinstance(message, dict):  # anything else is the template check's to refuse
            validated(SlackMessage, message, settings, f"templates.{key}")
    try:
        # The names templates may use are those pixhook's wording fills in.
        return check_templates(value, SLACK_WORDING.template_roots)
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
