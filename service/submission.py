"""Checking a job submission before anything is stored or queued."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pybase64

from service import imaging
from service.config import Settings
from service.errors import InvalidInput
from service.events import SUBSCRIPTIONS
from service.tasks import JOB_TYPES
from service.unknown_fields import refuse_unknown_fields
from webhooks.guard import FORBIDDEN_ADDRESS, GuardRefused

_JOB_FIELDS = frozenset({"type", "input", "webhook_url", "webhook_events", "metadata"})
_IMAGE_FIELDS = ("base64", "url")


@dataclass(frozen=True)
class ImageInput:
    """The bytes that came with the request, or (`data` None) a URL the worker fetches."""

    data: bytes | None
    description: dict[str, Any]


@dataclass(frozen=True)
class Submission:
    type: str
    params: dict[str, Any]
    image: ImageInput | None
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    metadata: dict[str, Any]

    def input_record(self) -> dict[str, Any]:
        """The job's `input` as stored and shown: parameters and a description of the image."""
        if self.image is None:
            return dict(self.params)
        return {"image": self.image.description, **self.params}


def parse_submission(body: Any, upload: bytes | None, settings: Settings) -> Submission:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    refuse_unknown_fields(body, _JOB_FIELDS)
    job_type = parse_job_type(body.get("type"))
    raw_input = body.get("input", {})
    if not isinstance(raw_input, dict):
        raise InvalidInput("input must be an object", field="input")
    if JOB_TYPES[job_type].takes_image:
        image: ImageInput | None = _image(raw_input.get("image"), upload, settings)
    elif "image" in raw_input or upload is not None:
        raise InvalidInput(f"{job_type} takes no input image", field="input.image")
    else:
        image = None
    params = {k: v for k, v in raw_input.items() if k != "image"}
    return Submission(
        type=job_type,
        params=JOB_TYPES[job_type].parse_input(params, settings),
        image=image,
        webhook_url=parse_webhook_url(body.get("webhook_url"), settings),
        webhook_events=parse_webhook_events(body.get("webhook_events")),
        metadata=parse_metadata(body.get("metadata"), settings),
    )


async def read_submission(body: Any, upload: bytes | None, settings: Settings) -> Submission:
    """`parse_submission` in a thread: Pillow reads the image's headers there, for as long as
    a hostile file makes it (up to PIXHOOK_IMAGE_CHECK_TIMEOUT), and the event loop goes on
    serving every other request."""
    return await asyncio.to_thread(parse_submission, body, upload, settings)


def _image(spec: Any, upload: bytes | None, settings: Settings) -> ImageInput:
    if isinstance(spec, dict):
        refuse_unknown_fields(spec, _IMAGE_FIELDS, "input.image")
    if isinstance(spec, dict) and spec.keys() == {"url"}:
        url = parse_url(spec["url"], "input.image.url", settings)
        return ImageInput(None, {"source": "url", "url": url})
    data, source = _image_bytes(spec, upload, settings)
    try:
        info = imaging.inspect(
            data, settings.max_image_pixels, settings.max_frames, settings.image_check_timeout_s
        )
    except imaging.ImageRejected as exc:
        raise InvalidInput(str(exc), code=exc.code, field="input.image") from exc
    description = {
        "source": source,
        "bytes": len(data),
        "format": info.format,
        "width": info.width,
        "height": info.height,
    }
    return ImageInput(data, description)


def _image_bytes(spec: Any, upload: bytes | None, settings: Settings) -> tuple[bytes, str]:
    if upload is not None and spec is None:
        data, source = upload, "upload"
    elif spec is None:
        raise InvalidInput(
            'input.image is required: {"base64": "..."} or a multipart \'image\' file',
            code="MISSING_IMAGE",
            field="input.image",
        )
    elif not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidInput(
            "input.image must be an object with exactly one of: base64, url", field="input.image"
        )
    elif isinstance(spec.get("base64"), str):
        data, source = _decode_base64(spec["base64"]), "base64"
    else:
        raise InvalidInput("input.image.base64 must be a string", field="input.image.base64")
    if len(data) > settings.max_image_bytes:
        raise InvalidInput(
            f"the image is larger than {settings.max_image_bytes} bytes",
            code="IMAGE_TOO_LARGE",
            field="input.image",
        )
    return data, source


def _decode_base64(text: str) -> bytes:
    if text.startswith("data:"):  # a data URL: data:image/png;base64,....
        _, _, text = text.partition(",")
    # binascii.Error for a bad digit or padding; a plain ValueError for characters past Latin-1.
    try:
        return pybase64.b64decode(text, validate=True)
    except ValueError:
        pass
    # Line-wrapped base64 (MIME, `base64` without -w0) is fine too; only then pay for a copy.
    try:
        return pybase64.b64decode("".join(text.split()), validate=True)
    except ValueError as exc:
        raise InvalidInput(
            "input.image.base64 is not valid base64", field="input.image.base64"
        ) from exc


def parse_url(value: Any, field: str, settings: Settings) -> str:
    """An absolute http(s) URL the SSRF guard does not refuse outright."""
    if not isinstance(value, str) or len(value) > settings.max_url_length:
        raise InvalidInput(
            f"{field} must be a URL of at most {settings.max_url_length} characters",
            field=field,
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"{field} must be an absolute http:// or https:// URL",
            code="INVALID_URL",
            field=field,
        )
    try:
        # What can be judged without DNS is judged now; a name's addresses when it is used.
        settings.allow_private_networks.check_url(value)
    except GuardRefused as exc:
        code = "URL_NOT_ALLOWED" if exc.reason == FORBIDDEN_ADDRESS else "INVALID_URL"
        raise InvalidInput(f"{field} is not allowed: {exc}", code=code, field=field) from exc
    return value


def parse_job_type(value: Any) -> str:
    # A str first: an object or a list cannot be looked up in a dict (TypeError, a 500).
    if not isinstance(value, str) or value not in JOB_TYPES:
        raise InvalidInput(
            f"type must be one of: {', '.join(sorted(JOB_TYPES))}",
            code="UNKNOWN_JOB_TYPE",
            field="type",
        )
    job_type: str = value
    return job_type


def parse_webhook_url(value: Any, settings: Settings) -> str | None:
    return None if value is None else parse_url(value, "webhook_url", settings)


def parse_webhook_events(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("completed",)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(event, str) and event in SUBSCRIPTIONS for event in value)
    ):
        raise InvalidInput(
            "webhook_events must be a non-empty list drawn from: "
            + ", ".join(sorted(SUBSCRIPTIONS)),
            field="webhook_events",
        )
    return tuple(sorted(set(value)))


def parse_metadata(value: Any, settings: Settings) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be an object", field="metadata")
    if len(json.dumps(value).encode()) > settings.max_metadata_bytes:
        raise InvalidInput(
            f"metadata must be at most {settings.max_metadata_bytes} bytes as JSON",
            code="METADATA_TOO_LARGE",
            field="metadata",
        )
    return value
