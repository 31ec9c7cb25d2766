"""A bench's local stack: its work dir, whether its processes still run, what its logs say."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError

if TYPE_CHECKING:
    from service.cli.devstack import RunningStack

# pixhook's ids (job_..., bat_..., evt_...), to blank out of log lines and Redis keys.
ID_PART = re.compile(r"\b(job|bat|evt|dlv|del|cli|upl)_[A-Za-z0-9_-]+")
# Lines worth a look: logging's and uvicorn's warnings and errors, tracebacks, requests answered
# 4xx/5xx, and arq's retried (↻), failed (!) or aborted (⊘) jobs.
NOTEWORTHY = re.compile(
    r"( (WARNING|ERROR|CRITICAL) [\w.]+ |^(WARNING|ERROR|CRITICAL):|^Traceback"
    r'|" [45]\d\d |\d+\.\d+s [↻×!⊘] )'
)


NUMBER = re.compile(r"\d+(\.\d+)?")
PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})


def check_alive(stack: RunningStack) -> None:
    """BenchError if a process of the stack has exited."""
    exited = stack.processes.exited()
    if exited:
        raise BenchError(f"stack processes exited during the run: {exited}")


@contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh temporary dir for a stack. If the run fails, the tails of its logs/ are printed;
    afterwards it is kept (and said so) if `keep`, else removed."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        print_log_tails(path / "logs")
        raise
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def print_log_tails(logdir: Path) -> None:
    """The last 3,000 characters of each log in `logdir`, to stderr."""
    for log in sorted(logdir.glob("*.log")):
        print(f"--- {log.name} tail:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)


def log_messages(log: Path) -> Iterator[tuple[str, str]]:
    """(level, message) of each line: the service logs JSON objects (PIXHOOK_LOG_FORMAT=json,
    the default for its processes); anything else is a message of its own with no level."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            yield "", line
            continue
        if isinstance(record, dict):
            message = str(record.get("message", ""))
            if record.get("exception"):
                message += f" ({str(record['exception']).splitlines()[-1]})"
            yield str(record.get("level", "")).upper(), message
        else:
            yield "", line


def log_problems(logdir: Path) -> dict[str, Counter[str]]:
    """Per log file: its noteworthy lines, ids, numbers and times blanked, counted."""
    found: dict[str, Counter[str]] = {}
    for log in sorted(logdir.glob("*.log")):
        counts: Counter[str] = Counter()
        for level, message in log_messages(log):
            if level in PROBLEM_LEVELS or NOTEWORTHY.search(message):
                text = NUMBER.sub("N", ID_PART.sub(r"\1_*", message))
                counts[f"{level} {text}".strip()[:140]] += 1
        if counts:
            found[log.stem] = counts
    return found
