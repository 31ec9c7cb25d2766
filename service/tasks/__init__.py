"""Job types: how each one's `input` is checked at submission and how it runs on a worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from service.config import Settings
from service.jobs.model import Job
from service.tasks import analyze, generate, text, transform
from service.tasks.context import TaskContext


@dataclass(frozen=True)
class JobType:
    name: str
    # What `input` may hold (its image aside): the validator and the document's component.
    input_model: type[BaseModel]
    # The validated input's normalised parameters, or InvalidInput for a rule across fields.
    parse_input: Callable[[Any, Settings], dict[str, Any]]
    # Raises JobFailure or returns the job's output; the image is empty for a type that takes none.
    run: Callable[[Job, bytes, TaskContext], Awaitable[dict[str, Any]]]
    # Whether a job of this type is given an input image.
    image: Literal["required", "optional", "none"] = "required"
    # The names of the outputs a job with these parameters stores (none: it stores no files).
    outputs: Callable[[dict[str, Any]], list[str]] = lambda params: []


JOB_TYPES: dict[str, JobType] = {
    transform.NAME: JobType(
        transform.NAME,
        transform.TransformInput,
        transform.parse_input,
        transform.run,
        outputs=transform.outputs,
    ),
    generate.NAME: JobType(
        generate.NAME,
        generate.GenerateInput,
        generate.parse_input,
        generate.run,
        image="optional",
        outputs=generate.outputs,
    ),
    analyze.NAME: JobType(analyze.NAME, analyze.AnalyzeInput, analyze.parse_input, analyze.run),
    text.NAME: JobType(text.NAME, text.TextInput, text.parse_input, text.run, image="none"),
}
