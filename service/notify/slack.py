"""The default Slack message for a pixhook event: a one-line summary (also the notification
text) and Block Kit sections for its facts, output, error and links.

Every value taken from the event is escaped (`escape_mrkdwn`) and cut to a sensible length here;
the delivery engine still applies Slack's hard limits to the result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from webhooks import Mrkdwn, escape_mrkdwn

_MAX_FIELDS = 10
_URL_CHARS = 3000
_METADATA_SHOWN = 5
_FAILURES_SHOWN = 5

_JOB_VERBS = {
    "job.started": (":arrow_forward:", "started"),
    "job.completed": (":white_check_mark:", "succeeded"),
    "job.failed": (":x:", "failed"),
    "job.canceled": (":no_entry_sign:", "canceled"),
}
_BATCH_EMOJI = {
    "batch.started": ":arrow_forward:",
    "batch.progress": ":hourglass_flowing_sand:",
    "batch.completed": ":package:",
    "batch.canceled": ":no_entry_sign:",
    "batch.failed": ":x:",
    "batch.paused": ":double_vertical_bar:",
    "batch.resumed": ":arrow_forward:",
}

Fields = list[tuple[str, str]]


def summary_line(event_type: str, data: Mapping[str, Any]) -> str:
    """One line of mrkdwn saying what happened, e.g. ":x: `image.analyze` job `job_1` failed"."""
    if event_type in _JOB_VERBS:
        emoji, verb = _JOB_VERBS[event_type]
        line = f"{emoji} {_code(data.get('type'))} job {_code(data.get('id'))}{_for(data)} {verb}"
        code = _plain(_dig(data, "error", "code"))
        if event_type == "job.failed" and code:
            return f"{line}: {escape_mrkdwn(_cut(code, 100))}"
        duration = _duration(data)
        return f"{line} in {duration}" if event_type == "job.completed" and duration else line
    if event_type in _BATCH_EMOJI:
        return _batch_summary(event_type, data)
    if event_type == "endpoint.disabled":
        reason = _plain(data.get("reason"))
        line = f":warning: endpoint {_code(data.get('id'))} ({_text(data.get('host'), 200)})"
        return f"{line} was disabled: {_text(reason, 500)}" if reason else f"{line} was disabled"
    if event_type == "ping":
        return f":wave: pixhook test message for endpoint {_code(data.get('endpoint_id'))}"
    about = f" for {_code(data['id'])}" if _plain(data.get("id")) else ""
    return f":bell: pixhook event {_code(event_type)}{about}"


def _batch_summary(event_type: str, data: Mapping[str, Any]) -> str:
    counts = _counts(data)
    line = f"{_BATCH_EMOJI[event_type]} batch {_code(data.get('id'))} ({_code(data.get('type'))})"
    if event_type == "batch.started":
        return f"{line} started: {counts['total']} items"
    if event_type == "batch.progress":
        done = counts["succeeded"] + counts["failed"] + counts["canceled"]
        # floor, so a batch shows 100% only once every item is done
        percent = math.floor(100 * done / counts["total"]) if counts["total"] else 100
        return f"{line} {percent}% ({done} of {counts['total']})"
    if event_type in ("batch.paused", "batch.resumed"):
        return f"{line} {_pause_words(event_type, data)}"
    if event_type == "batch.failed":
        code = _plain(_dig(data, "error", "code"))
        return f"{line} failed: {escape_mrkdwn(_cut(code, 100))}" if code else f"{line} failed"
    tally = f"{counts['succeeded']} succeeded, {counts['failed']} failed"
    if counts["canceled"]:
        tally += f", {counts['canceled']} canceled"
    verb = "completed" if event_type == "batch.completed" else "canceled"
    duration = _duration(data)
    return f"{line} {verb}: {tally} of {counts['total']}" + (f" in {duration}" if duration else "")


def default_message(
    event: Mapping[str, Any], event_type: str, data: Mapping[str, Any], summary: str
) -> dict[str, Any]:
    """`summary` as the notification text, and blocks: summary (with the output thumbnail),
    facts, output links or error, and a context line linking to the job or batch."""
    head: dict[str, Any] = {"type": "section", "text": _mrkdwn(summary)}
    blocks = [head]
    fields = [_mrkdwn(f"*{label}*\n{value}") for label, value in _fields(event_type, data) if value]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if event_type.startswith("job."):
        image = _first_image(data)
        if image is not None:
            url, name = image
            head["accessory"] = {"type": "image", "image_url": url, "alt_text": name or "output"}
        blocks += _sections(_output_links(data), _error_text(data))
    elif event_type.startswith("batch."):
        blocks += _sections(_summary_text(data), _failures_text(data))
    elif event_type == "ping":
        blocks += _sections(_text(data.get("message"), 1000))
    blocks.append({"type": "context", "elements": _context_elements(event, event_type, data)})
    return {"text": summary, "blocks": blocks}


def _fields(event_type: str, data: Mapping[str, Any]) -> Fields:
    if event_type.startswith(("job.", "batch.")):
        fields = [("Type", _code(data.get("type"))), ("Status", _text(data.get("status"), 50))]
        duration = _duration(data)
        fields += [("Duration", duration)] if duration else []
        fields.append(("Id", _code(data.get("id"))))
        if _plain(data.get("reference")):
            fields.append(("Reference", _code(data.get("reference"))))
        if event_type.startswith("batch."):
            fields += _count_fields(data)
        elif isinstance(data.get("batch"), Mapping):
            batch = data["batch"]
            fields.append(("Batch", f"{_code(batch.get('id'))} #{_text(batch.get('index'), 20)}"))
        return fields + _metadata_field(data.get("metadata"))
    if event_type == "endpoint.disabled":
        names = ("Host", "host"), ("Failing since", "failing_since"), ("Disabled at", "disabled_at")
        fields = [("Id", _code(data.get("id")))]
        fields += [(label, _text(data.get(key), 200)) for label, key in names]
        return fields + [("Description", _text(data.get("description"), 500))]
    if event_type == "ping":
        return []
    scalars = [(k, v) for k, v in data.items() if isinstance(v, str | int | float | bool)]
    return [(_text(k, 50), _text(v, 500)) for k, v in scalars[: _MAX_FIELDS - 1]]


def _count_fields(data: Mapping[str, Any]) -> Fields:
    counts = _counts(data)
    names = ("total", "succeeded", "failed", "canceled")
    fields = [(name.capitalize(), str(counts[name])) for name in names]
    if _plain(data.get("status")) == "running":
        fields.append(("Pending", str(counts["pending"] + counts["in_flight"])))
    return fields


def _summary_text(data: Mapping[str, Any]) -> str:
    """How the batch went, one line a figure: a section of its own, as a section holds at most
    ten fields and the counts and metadata take those."""
    lines = [f"*{label}:* {value}" for label, value in _summary_fields(data.get("summary"))]
    return "*Summary*\n" + "\n".join(lines) if lines else ""


def _summary_fields(summary: object) -> Fields:
    """How the batch went: success rate, latency, throughput and its commonest error codes."""
    if not isinstance(summary, Mapping):
        return []
    fields: Fields = []
    rate = summary.get("success_rate")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        fields.append(("Success rate", f"{rate * 100:.1f}%"))
    p50, p95 = _dig(summary, "latency", "p50_ms"), _dig(summary, "latency", "p95_ms")
    if isinstance(p50, int | float) and isinstance(p95, int | float):
        fields.append(("Latency p50 / p95", f"{_ms(p50)} / {_ms(p95)}"))
    throughput = summary.get("throughput_per_s")
    if isinstance(throughput, int | float) and not isinstance(throughput, bool):
        fields.append(("Throughput", f"{throughput:.2f} items/s"))
    codes = summary.get("by_error_code")
    if isinstance(codes, Mapping) and codes:
        top = list(codes.items())[:3]
        text = ", ".join(f"{_code(code)} {_text(count, 12)}" for code, count in top)
        fields.append(("Errors", text + (" …" if len(codes) > 3 else "")))
    return fields


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def _for(data: Mapping[str, Any]) -> str:
    """' for `SKU-42`': the caller's own name for what a job or item is about, if it has one."""
    return f" for {_code(data.get('reference'))}" if _plain(data.get("reference")) else ""


def _metadata_field(metadata: object) -> Fields:
    if not isinstance(metadata, Mapping) or not metadata:
        return []
    pairs = list(metadata.items())
    lines = [f"{_text(k, 40)}={_text(v, 100)}" for k, v in pairs[:_METADATA_SHOWN]]
    if len(pairs) > _METADATA_SHOWN:
        lines.append(f"… and {len(pairs) - _METADATA_SHOWN} more")
    return [("Metadata", "\n".join(lines))]


def _images(data: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Output images that Slack can show: an image media type at a usable http(s) URL."""
    images = _dig(data, "output", "images")
    for image in images if isinstance(images, list) else []:
        if not isinstance(image, Mapping):
            continue
        url = _safe_url(image.get("url"))
        if url and _plain(image.get("media_type")).startswith("image/"):
            yield url, image


def _first_image(data: Mapping[str, Any]) -> tuple[str, str] | None:
    for url, image in _images(data):
        return url, _cut(_plain(image.get("name")), 2000)
    return None


def _output_links(data: Mapping[str, Any]) -> str:
    links = [_link(url, _file_name(image)) for url, image in _images(data)][:10]
    return "*Output*\n" + " · ".join(links) if links else ""


def _file_name(image: Mapping[str, Any]) -> str:
    name = _plain(image.get("name")) or "image"
    extension = _plain(image.get("media_type")).removeprefix("image/").partition("+")[0]
    return name if "." in name or not extension else f"{name}.{extension}"


def _error_text(data: Mapping[str, Any]) -> str:
    error = data.get("error")
    if not isinstance(error, Mapping):
        return ""
    text = f"*Error* {_code(error.get('code'))}"
    message = _plain(error.get("message"))
    # cut before wrapping, so the code block always closes however long the message
    return f"{text}\n```{_text(message, 2500)}```" if message else text


def _failures_text(data: Mapping[str, Any]) -> str:
    listed = data.get("failures")
    failures = [f for f in listed if isinstance(f, Mapping)] if isinstance(listed, list) else []
    if not failures:
        return ""
    lines = ["*Failures*"]
    for failure in failures[:_FAILURES_SHOWN]:
        nested = failure.get("error")  # items refused at intake nest it; job failures do not
        error = nested if isinstance(nested, Mapping) else failure
        code, message = _code(error.get("code")), _text(error.get("message"), 150)
        item = f"item {_text(failure.get('index'), 20)}{_for(failure)}"
        lines.append(f"• {item}: {code} {message}")
    if len(failures) > _FAILURES_SHOWN:
        lines.append(f"… and {len(failures) - _FAILURES_SHOWN} more")
    return "\n".join(lines)


def _context_elements(
    event: Mapping[str, Any], event_type: str, data: Mapping[str, Any]
) -> list[dict[str, str]]:
    noun = event_type.partition(".")[0] if event_type.startswith(("job.", "batch.")) else ""
    links = [_link(_page_url(data), f"View {noun}".strip())]
    if event_type.startswith("batch."):
        lines = _text(_dig(data, "results", "lines"), 20)
        links.append(_link(_dig(data, "results", "url"), f"Results ({lines} lines)"))
    event_id = _plain(event.get("id"))
    stamp = [f"event {_code(event_id)}" if event_id else "", _text(event.get("timestamp"), 40)]
    return [_mrkdwn(text) for text in [*links, " · ".join(filter(None, stamp))] if text]


def template_context(
    event: Mapping[str, Any], event_type: str, data: Mapping[str, Any], summary: str
) -> dict[str, Any]:
    """The values template placeholders name: `{data.id}`, `{summary}`, `{thumbnail_url}`…"""
    thumbnail = next((url for url, _ in _images(data)), "")
    return {
        "event": {"type": event_type, "id": event.get("id"), "timestamp": event.get("timestamp")},
        "data": data,
        "summary": Mrkdwn(summary),
        "duration": _duration(data),
        "link": _safe_url(_page_url(data)) or "",
        "thumbnail_url": thumbnail,
        "output_url": thumbnail or _safe_url(_dig(data, "results", "url")) or "",
    }


# -- small pieces -------------------------------------------------------------------------------


def _sections(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": _mrkdwn(text)} for text in texts if text]


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _pause_words(event_type: str, data: Mapping[str, Any]) -> str:
    """Why a batch paused, or that it runs again, e.g. "paused: its budget of $5 is reached"."""
    if event_type == "batch.resumed":
        return "resumed"
    if data.get("paused_reason") == "keys":
        provider = _text(data.get("paused_provider"), 50)
        return f"paused: every {provider} API key was refused; add a key, then resume it"
    spent, budget = data.get("cost_usd"), data.get("max_cost")
    if isinstance(spent, int | float) and isinstance(budget, int | float):
        return f"paused: it has cost ${spent:.4f} of its ${budget:.4f} budget"
    return "paused"


def _plain(value: object) -> str:
    """Event values as text: strings as they are, nothing as "", anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _text(value: object, limit: int) -> str:
    return escape_mrkdwn(_cut(_plain(value), limit))


def _code(value: object) -> str:
    # mrkdwn has no escape for a backquote inside a code span: swap it for a look-alike
    return f"`{_text(value, 200).replace('`', 'ˋ')}`"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: object, label: str) -> str:
    """`<url|label>`, or nothing if the URL is unsafe to put in Slack's link syntax."""
    safe = _safe_url(url)
    return f"<{safe}|{escape_mrkdwn(label)}>" if safe else ""


def _safe_url(url: object) -> str | None:
    if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
        return None
    if len(url) > _URL_CHARS or any(c in "|<>" or c.isspace() for c in url):
        return None
    return url


def _page_url(data: Mapping[str, Any]) -> object:
    """Where a reader can look at the job or batch: its console page when the event names one
    (the API's own URL needs a key that a Slack reader does not have), else its API URL."""
    return _dig(data, "urls", "console") or _dig(data, "urls", "self")


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _counts(data: Mapping[str, Any]) -> dict[str, int]:
    counts = data.get("counts")
    counts = counts if isinstance(counts, Mapping) else {}
    names = ("total", "pending", "in_flight", "succeeded", "failed", "canceled")
    return {n: c if isinstance(c := counts.get(n), int) and c >= 0 else 0 for n in names}


def _duration(data: Mapping[str, Any]) -> str:
    """started_at → finished_at, for people: "850 ms", "1.2 s", "3 min", "2 h 5 min"."""
    started, finished = _moment(data.get("started_at")), _moment(data.get("finished_at"))
    if started is None or finished is None or finished < started:
        return ""
    ms = round((finished - started).total_seconds() * 1000)
    if ms < 1000:
        return f"{ms} ms"
    if ms < 9950:  # rounds to 10.0 s and above: whole seconds from there
        return f"{ms / 1000:.1f} s"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return _two_units(*divmod(seconds, 60), "min", "s")
    hours, minutes = divmod(round(seconds / 60), 60)
    if hours < 24:
        return _two_units(hours, minutes, "h", "min")
    return _two_units(*divmod(hours, 24), "d", "h")


def _two_units(big: int, small: int, big_unit: str, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
