"""Log lines as JSON objects (or plain text for `pixhook dev`), carrying the job, client, batch,
delivery and request a line is about: from `bind()` (set per request and per job) or `extra=`."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["json", "text"]
CONTEXT_FIELDS = ("request_id", "job_id", "client_id", "batch_id", "delivery_id")
_context: ContextVar[dict[str, str]] = ContextVar("pixhook_log_context")
# Printable ASCII without spaces: safe in a log line and in a response header.
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


@contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Add fields to every line logged within the block (in this task and tasks it starts)."""
    token = _context.set(_context.get({}) | {k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


def add(**fields: str | None) -> None:
    """Add fields for the rest of the current context: within a request, until its `bind` ends."""
    _context.set(_context.get({}) | {k: v for k, v in fields.items() if v is not None})


def bound(name: str) -> str | None:
    """A field `bind()` set in this context, e.g. the request id a job is created under."""
    return _context.get({}).get(name)


def request_id(header: str | None) -> str:
    """The caller's `X-Request-ID` when it is at most 128 printable characters, else a new one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return f"req_{secrets.token_hex(12)}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= _context.get({})
        line |= {k: v for k in CONTEXT_FIELDS if (v := getattr(record, k, None)) is not None}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _context.get({}) | {
            k: v for k in CONTEXT_FIELDS if (v := getattr(record, k, None)) is not None
        }
        return " ".join([text, *(f"{k}={v}" for k, v in fields.items())])


def setup_logging(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Route every logger (uvicorn's and arq's too) through one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One line per HTTP request drowns what matters; failures are logged by our own code.
    logging.getLogger("httpx").setLevel(logging.WARNING)
