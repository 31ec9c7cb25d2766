"""Output file names from a template, `output_name`: `{reference}/{variant}.{ext}`.

What a name may be, checked when a job (or a batch, or `PIXHOOK_OUTPUT_NAME`) gives one, and the
name it renders to; service/tasks/output_keys.py says where a named output is stored.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from service.errors import InvalidInput

PLACEHOLDERS = ("reference", "variant", "ext", "job_id", "index")
MAX_TEMPLATE_CHARS = 200
# Each part of a stored name: S3 allows far more, a file system 255 bytes.
MAX_SEGMENT_CHARS = 255
CODE = "INVALID_OUTPUT_NAME"

# What a name may hold between its placeholders: safe in S3 keys, URLs and file systems alike.
_LITERAL = re.compile(r"[A-Za-z0-9._/-]*")
# A reference keeps these; anything else (a slash, a space, a quote) becomes `_`.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def check_output_name(
    template: str,
    *,
    outputs: Sequence[str],
    reference: str | None,
    in_batch: bool,
    field: str = "output_name",
) -> None:
    """Refuses, with INVALID_OUTPUT_NAME and `field`, a template that names an unknown
    placeholder, has unsafe characters or folders, or cannot tell this job's outputs apart."""
    names = check_template(template, field)
    if not outputs:
        raise InvalidInput(f"{field}: this job type stores no files", code=CODE, field=field)
    if len(outputs) > 1 and "variant" not in names:
        raise InvalidInput(
            f"{field} must contain {{variant}}: this job has {len(outputs)} outputs",
            code=CODE,
            field=field,
        )
    if "reference" in names and reference is None:
        raise InvalidInput(
            f"{field} uses {{reference}}, but the job has none", code=CODE, field=field
        )
    if "index" in names and not in_batch:
        raise InvalidInput(f"{field}: {{index}} is for batch items only", code=CODE, field=field)
    # The longest name this job could render: its parts must fit a file system.
    check_segments(
        render(template, reference or "", max(outputs, key=len), "webp", "job_" + "x" * 26, 0),
        field,
    )


def parse_template(raw: str) -> str:
    """`PIXHOOK_OUTPUT_NAME`: a template `check_template` accepts, else ValueError saying why."""
    if len(raw) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"at most {MAX_TEMPLATE_CHARS} characters")
    try:
        check_template(raw, "the template")
        # Folders are judged on a name it renders: `../{reference}` could never name a job.
        check_segments(render(raw, "r", "default", "webp", "job_x", 0), "the template")
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc
    return raw


def check_template(template: str, field: str = "output_name") -> list[str]:
    """The placeholders `template` names; INVALID_OUTPUT_NAME for an unknown one or an unsafe
    character, whatever job it is for (a batch's template is checked once, before its items)."""
    names = _placeholders(template, field)
    for name in names:
        if name not in PLACEHOLDERS:
            allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            raise InvalidInput(
                f"{field}: unknown placeholder {{{name}}}; use {allowed}", code=CODE, field=field
            )
    return names


def render(
    template: str, reference: str, variant: str, ext: str, job_id: str, index: int | None
) -> str:
    values = {
        "reference": safe_part(reference),
        "variant": variant,
        "ext": ext,
        "job_id": job_id,
        "index": "" if index is None else str(index),
    }
    return template.format_map(values)


def safe_part(value: str) -> str:
    """A caller's value made one plain part of a name: no folders, no `.` or `..`."""
    cleaned = _UNSAFE.sub("_", value)
    return cleaned.replace(".", "_") if set(cleaned) <= {"."} else cleaned


def _placeholders(template: str, field: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInput(
            f"{field} is not a valid template: {exc}", code=CODE, field=field
        ) from exc
    names = []
    for literal, name, spec, conversion in parsed:
        if not _LITERAL.fullmatch(literal):
            raise InvalidInput(
                f"{field} may hold letters, digits, '.', '_', '-', '/' and placeholders only",
                code=CODE,
                field=field,
            )
        if name is None:
            continue
        if spec or conversion:
            raise InvalidInput(
                f"{field}: placeholders take no format, like {{{name}}}", code=CODE, field=field
            )
        names.append(name)
    return names


def check_segments(name: str, field: str) -> None:
    if name.startswith("/") or name.endswith("/"):
        raise InvalidInput(f"{field} must not start or end with '/'", code=CODE, field=field)
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidInput(
                f"{field} must not hold empty, '.' or '..' folders", code=CODE, field=field
            )
        if len(segment) > MAX_SEGMENT_CHARS:
            raise InvalidInput(
                f"{field}: each part between '/' is at most {MAX_SEGMENT_CHARS} characters",
                code=CODE,
                field=field,
            )
