"""Checking a job submission before anything is stored or queued."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import pybase64
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service import imaging
from service.config import Settings
from service.errors import InvalidInput
from service.output_names import MAX_TEMPLATE_CHARS, check_output_name
from service.publishing import SUBSCRIPTIONS
from service.shapes.fields import INVALID_INPUT, Bound, JsonText, Refused
from service.shapes.validation import REQUEST, validated
from service.tasks import JOB_TYPES, JobType
from webhooks import FORBIDDEN_ADDRESS, GuardRefused

MAX_REFERENCE_LENGTH = 200

Url = Annotated[
    str,
    Field(json_schema_extra={"format": "uri"}),
    Bound(
        "limits.max_url_length", "maxLength", "{field} must be a URL of at most {bound} characters"
    ),
]


Subscription: Any = Literal[tuple(sorted(SUBSCRIPTIONS))]
# One message for the whole list, whatever item is wrong: the caller reads the choices.
Subscriptions = Annotated[
    list[Subscription],
    Field(min_length=1),
    Refused("{field} must be a non-empty list drawn from: " + ", ".join(sorted(SUBSCRIPTIONS))),
]


class ImageSource(BaseModel):
    """An image: a URL the worker fetches, or the bytes in base64 (a data: URL's too); or, in a
    multipart request, the file `image` instead."""

    model_config = ConfigDict(
        **REQUEST,
        json_schema_extra={"oneOf": [{"required": ["url"]}, {"required": ["base64"]}]},
    )
    url: Url | None = None
    # The pattern is the document's only: decoding checks the text, without a regex pass over
    # megabytes first. Base64 is ASCII (a data: URL's prefix aside); whitespace in it is skipped.
    base64: (
        Annotated[
            str, Field(json_schema_extra={"pattern": "^(data:[^,]*,)?[A-Za-z0-9+/=\t\n\r ]*$"})
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageSource:
        if (self.url is None) == (self.base64 is None):
            raise PydanticCustomError(
                INVALID_INPUT, "input.image must be an object with exactly one of: base64, url"
            )
        return self


class Delivery(BaseModel):
    """Where and when a job's (or batch's) events go, and what they echo back."""

    model_config = REQUEST
    webhook_url: Url | None = None
    webhook_events: Annotated[Subscriptions | None, Field(description="default: completed")] = None
    metadata: Annotated[
        dict[str, Any] | None, Field(description="echoed back; PIXHOOK_MAX_METADATA_BYTES as JSON")
    ] = None


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
    reference: str | None = None
    output_name: str | None = None

    def input_record(self) -> dict[str, Any]:
        """The job's `input` as stored and shown: parameters and a description of the image."""
        if self.image is None:
            return dict(self.params)
        return {"image": self.image.description, **self.params}


# The caller's own id for what the job is about (a SKU, a CMS entry id): echoed everywhere the
# job is, and looked up by (`GET /v1/jobs?reference=`). Printable: it goes into file names.
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_REFERENCE_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the caller's id for what the job is about, e.g. a SKU",
    ),
    Refused(
        f"{{field}} must be a string of 1 to {MAX_REFERENCE_LENGTH} characters without control"
        " characters"
    ),
]


# Its outputs' file names (service/tasks/output_names.py), checked beyond this in parse_submission.
OutputName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TEMPLATE_CHARS,
        description="a template for the outputs' file names, e.g. {reference}/{variant}.{ext}",
    ),
]


def job_model(job_type: JobType) -> type[BaseModel]:
    """The body of a job of this type: `TransformJob` with its `TransformJobInput` ..."""
    name = job_type.input_model.__name__.removesuffix("Input")
    input_model = job_type.input_model
    if job_type.image != "none":
        image: Any = (ImageSource | None, None)
        input_model = create_model(f"{name}JobInput", __base__=input_model, image=image)
    tag: Any = Literal[job_type.name]
    reference: Any = (Reference | None, None)
    output_name: Any = (OutputName | None, None)
    return create_model(
        f"{name}Job",
        __base__=Delivery,
        type=(tag, ...),
        input=(input_model, ...),
        reference=reference,
        output_name=output_name,
    )


JOB_MODELS = {name: job_model(job_type) for name, job_type in JOB_TYPES.items()}
# Any job, its type saying which (`JobRequest` in the document).
JobRequest: Any = Annotated[
    Union[tuple(JOB_MODELS[name] for name in sorted(JOB_MODELS))],  # noqa: UP007
    Field(discriminator="type"),
]


class JobUpload(BaseModel):
    """A job as multipart/form-data (`bodies.read_job_request`): the JSON body in `job`, the
    image as the file `image` instead of `input.image`."""

    model_config = REQUEST
    job: Annotated[str, JsonText(JobRequest)]
    image: bytes | None = None


def parse_submission(
    body: Any, upload: bytes | None, settings: Settings, *, batch_item: bool = False
) -> Submission:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    job_type = parse_job_type(body.get("type"))
    raw_input = body.get("input")
    # Said plainly, rather than as an unknown field: the type takes no image at all.
    if JOB_TYPES[job_type].image == "none" and (
        upload is not None or (isinstance(raw_input, dict) and "image" in raw_input)
    ):
        raise InvalidInput(f"{job_type} takes no input image", field="input.image")
    # A job without `input` is refused for what its input lacks (an image, a prompt).
    job: Any = validated(
        JOB_MODELS[job_type], body if "input" in body else {**body, "input": {}}, settings
    )
    job_input = job.input
    wanted = JOB_TYPES[job_type].image
    given = wanted != "none" and (job_input.image is not None or upload is not None)
    image = _image(job_input.image, upload, settings) if wanted == "required" or given else None
    delivery: Delivery = job
    params = JOB_TYPES[job_type].parse_input(job_input, settings)
    output_name = _output_name(job, JOB_TYPES[job_type].outputs(params), batch_item, settings)
    return Submission(
        type=job_type,
        params=params,
        image=image,
        webhook_url=parse_webhook_url(delivery.webhook_url, settings),
        webhook_events=parse_webhook_events(delivery.webhook_events),
        metadata=parse_metadata(delivery.metadata, settings),
        reference=job.reference,
        output_name=output_name,
    )


def _output_name(job: Any, outputs: list[str], in_batch: bool, settings: Settings) -> str | None:
    """The job's own `output_name`, checked; else the setting's, for a job it can name."""
    given, default = job.output_name, settings.jobs.output_name or None
    template = given if given is not None else default
    if template is None:
        return None
    try:
        check_output_name(template, outputs=outputs, reference=job.reference, in_batch=in_batch)
    except InvalidInput:
        if given is not None:
            raise
        return None  # a default that does not fit this job (no reference...): its own folder
    return template


async def read_submission(
    body: Any, upload: bytes | None, settings: Settings, *, batch_item: bool = False
) -> Submission:
    """`parse_submission` in a thread: Pillow reads the image's headers there, for as long as
    a hostile file makes it (up to PIXHOOK_IMAGE_CHECK_TIMEOUT), and the event loop goes on
    serving every other request."""
    return await asyncio.to_thread(
        partial(parse_submission, body, upload, settings, batch_item=batch_item)
    )


def _image(spec: ImageSource | None, upload: bytes | None, settings: Settings) -> ImageInput:
    if spec is not None and spec.url is not None:
        url = parse_url(spec.url, "input.image.url", settings)
        return ImageInput(None, {"source": "url", "url": url})
    data, source = _image_bytes(spec, upload, settings)
    try:
        info = imaging.inspect(
            data,
            settings.limits.max_image_pixels,
            settings.limits.max_frames,
            settings.limits.image_check_timeout_s,
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


def _image_bytes(
    spec: ImageSource | None, upload: bytes | None, settings: Settings
) -> tuple[bytes, str]:
    if spec is not None and spec.base64 is not None:
        data, source = _decode_base64(spec.base64), "base64"
    elif upload is not None:
        data, source = upload, "upload"
    else:
        raise InvalidInput(
            'input.image is required: {"base64": "..."} or a multipart \'image\' file',
            code="MISSING_IMAGE",
            field="input.image",
        )
    if len(data) > settings.limits.max_image_bytes:
        raise InvalidInput(
            f"the image is larger than {settings.limits.max_image_bytes} bytes",
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
    if not isinstance(value, str) or len(value) > settings.limits.max_url_length:
        raise InvalidInput(
            f"{field} must be a URL of at most {settings.limits.max_url_length} characters",
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
        settings.deliveries.allow_private_networks.check_url(value)
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


def parse_webhook_events(value: list[str] | None) -> tuple[str, ...]:
    """The validated subscriptions, deduplicated; `completed` when none were asked for."""
    return ("completed",) if value is None else tuple(sorted(set(value)))


def parse_metadata(value: dict[str, Any] | None, settings: Settings) -> dict[str, Any]:
    if value is None:
        return {}
    if len(json.dumps(value).encode()) > settings.limits.max_metadata_bytes:
        raise InvalidInput(
            f"metadata must be at most {settings.limits.max_metadata_bytes} bytes as JSON",
            code="METADATA_TOO_LARGE",
            field="metadata",
        )
    return value
