"""pixhook events become Slack messages people can read, that Slack accepts, and that event data
cannot turn into links, mentions or markup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.notify import SLACK_WORDING
from webhooks import InvalidTemplate, is_slack_url, utc_timestamp
from webhooks import check_templates as check_templates_over
from webhooks.slack import slack_body as slack_body_in
from webhooks.slack import slack_message as slack_message_in

Templates = dict[str, dict[str, Any]]


def slack_message(event: dict[str, Any], templates: Templates | None = None) -> dict[str, Any]:
    """The message pixhook's wording makes of `event`."""
    return slack_message_in(event, SLACK_WORDING, templates)


def slack_body(event: dict[str, Any], templates: Templates | None = None) -> bytes:
    return slack_body_in(event, SLACK_WORDING, templates)


def check_templates(templates: object) -> Templates:
    """Templates checked against the names pixhook's wording fills in."""
    return check_templates_over(templates, SLACK_WORDING.template_roots)


STARTED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
THUMB_URL = "https://cdn.example.com/out/thumb.webp?sig=a1&exp=9"
JOB_URL = "https://pixhook.example.com/v1/jobs/job_abc"
BATCH_URL = "https://pixhook.example.com/v1/batches/bat_x"
RESULTS_URL = "https://cdn.example.com/out/bat_x.ndjson"


def at(seconds: float) -> str:
    return utc_timestamp(STARTED + timedelta(seconds=seconds))


def thumb(**changes: Any) -> dict[str, Any]:
    image = {"name": "thumb", "url": THUMB_URL, "media_type": "image/webp", "width": 512}
    return image | changes


def job(**changes: Any) -> dict[str, Any]:
    view = {
        "id": "job_abc",
        "type": "image.transform",
        "status": "succeeded",
        "created_at": at(-1),
        "started_at": at(0),
        "finished_at": at(1.2),
        "input": {},
        "output": {"images": [thumb()]},
        "error": None,
        "metadata": {},
        "sequence": 3,
        "batch": None,
        "urls": {"self": JOB_URL, "events": f"{JOB_URL}/events", "cancel": f"{JOB_URL}/cancel"},
    }
    return view | changes


def failed_job(message: str = "cannot decode the image", **changes: Any) -> dict[str, Any]:
    error = {"code": "INVALID_IMAGE", "message": message}
    return job(type="image.analyze", status="failed", output=None, error=error) | changes


def batch(**changes: Any) -> dict[str, Any]:
    counts = {"total": 100, "pending": 0, "in_flight": 0, "succeeded": 98, "failed": 2}
    view = {
        "id": "bat_x",
        "object": "batch",
        "type": "image.transform",
        "status": "completed",
        "created_at": at(-1),
        "started_at": at(0),
        "finished_at": at(180),
        "counts": counts | {"canceled": 0},
        "progress": 1.0,
        "metadata": {},
        "failures": [],
        "results": {"url": RESULTS_URL, "media_type": "application/x-ndjson", "lines": 100},
        "urls": {"self": BATCH_URL},
    }
    return view | changes


def event(event_type: str, data: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "id": "evt_1",
        "timestamp": "2026-11-23T10:00:02.000Z",
        "data": data,
    }


def texts(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn text in the blocks, in order: section texts, fields, context elements."""
    found = []
    for block in message["blocks"]:
        objects = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        found += [o["text"] for o in objects if isinstance(o, dict) and "text" in o]
    return found


def fields(message: dict[str, Any]) -> list[str]:
    return [f["text"] for block in message["blocks"] for f in block.get("fields", [])]


def context(message: dict[str, Any]) -> list[str]:
    [block] = [b for b in message["blocks"] if b["type"] == "context"]
    return [element["text"] for element in block["elements"]]


# -- default messages ---------------------------------------------------------------------------


def test_completed_job_summary_names_type_id_and_duration():
    message = slack_message(event("job.completed", job()))

    summary = ":white_check_mark: `image.transform` job `job_abc` succeeded in 1.2 s"
    assert message["text"] == summary
    assert message["blocks"][0]["text"] == {"type": "mrkdwn", "text": summary}


def test_completed_job_shows_its_first_image_as_the_thumbnail():
    output = {"images": [thumb(), thumb(name="large", url="https://cdn.example.com/l.jpg")]}

    head = slack_message(event("job.completed", job(output=output)))["blocks"][0]

    assert head["accessory"] == {"type": "image", "image_url": THUMB_URL, "alt_text": "thumb"}


def test_completed_job_links_every_output_image_by_file_name():
    large = thumb(name="large", url="https://cdn.example.com/l.jpg", media_type="image/jpeg")

    message = slack_message(event("job.completed", job(output={"images": [thumb(), large]})))

    links = f"*Output*\n<{THUMB_URL}|thumb.webp> · <https://cdn.example.com/l.jpg|large.jpeg>"
    assert links in texts(message)


@pytest.mark.parametrize(
    "image",
    [thumb(media_type="application/json"), thumb(url="ftp://cdn.example.com/t.webp"), "thumb"],
)
def test_output_that_is_no_web_image_gets_no_thumbnail(image: Any):
    message = slack_message(event("job.completed", job(output={"images": [image]})))

    assert "accessory" not in message["blocks"][0]
    assert not any(text.startswith("*Output*") for text in texts(message))


def test_job_fields_show_type_status_duration_id_and_batch():
    data = job(batch={"id": "bat_x", "index": 7})

    assert fields(slack_message(event("job.completed", data))) == [
        "*Type*\n`image.transform`",
        "*Status*\nsucceeded",
        "*Duration*\n1.2 s",
        "*Id*\n`job_abc`",
        "*Batch*\n`bat_x` #7",
    ]


def test_a_job_with_a_reference_is_named_by_it_in_its_summary_and_fields():
    data = failed_job(reference="SKU-42", metadata={"category": "shoes"})

    message = slack_message(event("job.failed", data))

    assert message["text"] == ":x: `image.analyze` job `job_abc` for `SKU-42` failed: INVALID_IMAGE"
    assert "*Reference*\n`SKU-42`" in fields(message)
    assert "*Metadata*\ncategory=shoes" in fields(message)


def test_a_reference_cannot_mention_the_channel_or_break_out_of_its_code_span():
    message = slack_message(event("job.completed", job(reference="<!channel> `x`")))

    assert "<!channel>" not in json.dumps(message)
    assert "*Reference*\n`&lt;!channel&gt; ˋxˋ`" in fields(message)


def test_metadata_shows_a_few_pairs_and_how_many_more():
    metadata = {f"key{n}": n for n in range(7)}

    message = slack_message(event("job.completed", job(metadata=metadata)))

    [field] = [f for f in fields(message) if f.startswith("*Metadata*")]

    assert field == "*Metadata*\nkey0=0\nkey1=1\nkey2=2\nkey3=3\nkey4=4\n… and 2 more"


def test_failed_job_summary_names_the_error_code():
    message = slack_message(event("job.failed", failed_job()))

    assert message["text"] == ":x: `image.analyze` job `job_abc` failed: INVALID_IMAGE"


def test_failed_job_shows_the_error_message_in_a_code_block():
    message = slack_message(event("job.failed", failed_job()))

    assert "*Error* `INVALID_IMAGE`\n```cannot decode the image```" in texts(message)


@pytest.mark.parametrize(
    ("event_type", "summary"),
    [
        ("job.started", ":arrow_forward: `image.transform` job `job_abc` started"),
        ("job.canceled", ":no_entry_sign: `image.transform` job `job_abc` canceled"),
    ],
)
def test_started_and_canceled_job_summaries(event_type: str, summary: str):
    assert slack_message(event(event_type, job(output=None)))["text"] == summary


def test_context_links_to_the_job_and_names_the_event():
    assert context(slack_message(event("job.completed", job()))) == [
        f"<{JOB_URL}|View job>",
        "event `evt_1` · 2026-11-23T10:00:02.000Z",
    ]


def test_completed_batch_summary_counts_outcomes_and_duration():
    message = slack_message(event("batch.completed", batch()))

    assert message["text"] == (
        ":package: batch `bat_x` (`image.transform`) completed: 98 succeeded, 2 failed of 100"
        " in 3 min"
    )


def test_batch_progress_summary_shows_the_share_done():
    counts = {"total": 1000, "pending": 550, "in_flight": 50, "succeeded": 390, "failed": 10}
    data = batch(status="running", finished_at=None, counts=counts | {"canceled": 0})

    message = slack_message(event("batch.progress", data))

    assert (
        message["text"]
        == ":hourglass_flowing_sand: batch `bat_x` (`image.transform`) 40% (400 of 1000)"
    )
    assert "*Pending*\n600" in fields(message)


def test_canceled_batch_summary_counts_the_canceled_items():
    counts = {"total": 100, "pending": 0, "in_flight": 0, "succeeded": 40, "failed": 0}
    data = batch(status="canceled", counts=counts | {"canceled": 60})

    assert slack_message(event("batch.canceled", data))["text"] == (
        ":no_entry_sign: batch `bat_x` (`image.transform`) canceled: 40 succeeded, 0 failed,"
        " 60 canceled of 100 in 3 min"
    )


def test_batch_fields_show_the_counts():
    assert fields(slack_message(event("batch.completed", batch())))[-4:] == [
        "*Total*\n100",
        "*Succeeded*\n98",
        "*Failed*\n2",
        "*Canceled*\n0",
    ]


def test_batch_lists_its_first_failures():
    failures = [{"index": n, "code": "INVALID_IMAGE", "message": "cannot decode"} for n in range(7)]

    message = slack_message(event("batch.completed", batch(failures=failures)))

    [listing] = [text for text in texts(message) if text.startswith("*Failures*")]
    assert listing.splitlines()[1] == "• item 0: `INVALID_IMAGE` cannot decode"
    assert listing.splitlines()[-1] == "… and 2 more"


def test_batch_failures_name_each_items_reference():
    failures = [
        {"index": 3, "reference": "SKU-3", "error": {"code": "INVALID_IMAGE", "message": "bad"}},
        {"index": 4, "reference": None, "error": {"code": "INVALID_INPUT", "message": "x"}},
    ]

    message = slack_message(event("batch.completed", batch(failures=failures)))

    [listing] = [text for text in texts(message) if text.startswith("*Failures*")]
    assert listing.splitlines()[1:] == [
        "• item 3 for `SKU-3`: `INVALID_IMAGE` bad",
        "• item 4: `INVALID_INPUT` x",
    ]


def test_batch_context_links_to_the_batch_and_its_results():
    assert context(slack_message(event("batch.completed", batch())))[:2] == [
        f"<{BATCH_URL}|View batch>",
        f"<{RESULTS_URL}|Results (100 lines)>",
    ]


def test_disabled_endpoint_summary_gives_the_host_and_reason():
    data = {
        "id": "ep_x",
        "object": "endpoint",
        "host": "cms.example.com",
        "description": "CMS",
        "reason": "every attempt failed for 5 days (last: HTTP 500)",
        "failing_since": at(-5 * 86400),
        "disabled_at": at(0),
    }

    message = slack_message(event("endpoint.disabled", data))

    assert message["text"] == (
        ":warning: endpoint `ep_x` (cms.example.com) was disabled: every attempt failed for"
        " 5 days (last: HTTP 500)"
    )
    assert "*Disabled at*\n2026-11-23T10:00:00.000Z" in fields(message)


def test_ping_names_the_endpoint_and_shows_the_message():
    message = slack_message(event("ping", {"endpoint_id": "ep_x", "message": "Hello from pixhook"}))

    assert message["text"] == ":wave: pixhook test message for endpoint `ep_x`"
    assert "Hello from pixhook" in texts(message)


def test_unknown_event_type_is_described_generically():
    message = slack_message(event("invoice.paid", {"id": "inv_1", "amount": 12, "lines": []}))

    assert message["text"] == ":bell: pixhook event `invoice.paid` for `inv_1`"
    assert fields(message) == ["*id*\ninv_1", "*amount*\n12"]


@pytest.mark.parametrize(
    "envelope",
    [
        {},
        {"type": 5, "data": "nope"},
        event("job.failed", {"error": "boom", "output": {"images": 3}, "metadata": []}),
        event("batch.completed", {"counts": {"total": "many"}, "failures": 7, "results": 1}),
    ],
)
def test_malformed_events_still_give_a_message(envelope: dict[str, Any]):
    message = slack_message(envelope)

    assert message["text"]
    assert message["blocks"]


# -- escaping and links -------------------------------------------------------------------------


def test_metadata_is_escaped():
    message = slack_message(event("job.completed", job(metadata={"note<": "<script>&"})))

    assert "*Metadata*\nnote&lt;=&lt;script&gt;&amp;" in fields(message)
    assert b"<script>" not in slack_body(event("job.completed", job(metadata={"n": "<script>"})))


def test_error_message_is_escaped_in_its_code_block():
    message = slack_message(event("job.failed", failed_job("<!channel> & <script>")))

    [error] = [text for text in texts(message) if text.startswith("*Error*")]
    assert error.endswith("```&lt;!channel&gt; &amp; &lt;script&gt;```")


def test_an_id_cannot_mention_the_channel():
    message = slack_message(event("job.started", job(id="<!channel>")))

    assert message["text"] == ":arrow_forward: `image.transform` job `&lt;!channel&gt;` started"


@pytest.mark.parametrize(
    "url",
    ["https://x.example/a|b", "https://x.example/a b", "https://x.example/<b>", "javascript:x()"],
)
def test_unsafe_urls_are_left_out_of_links_and_thumbnails(url: str):
    data = job(urls={"self": url}, output={"images": [thumb(url=url)]})

    message = slack_message(event("job.completed", data))

    assert "accessory" not in message["blocks"][0]
    assert context(message) == ["event `evt_1` · 2026-11-23T10:00:02.000Z"]


def test_link_labels_are_escaped():
    data = job(output={"images": [thumb(name="a<b>&c")]})

    assert f"*Output*\n<{THUMB_URL}|a&lt;b&gt;&amp;c.webp>" in texts(
        slack_message(event("job.completed", data))
    )


# -- Slack's limits -----------------------------------------------------------------------------


def assert_within_slack_limits(body: bytes) -> None:
    message = json.loads(body)
    assert len(body) <= 40_000
    assert len(message["text"]) <= 3000
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        assert len(block.get("text", {}).get("text", "")) <= 3000
        assert len(block.get("fields", [])) <= 10
        assert all(len(field["text"]) <= 2000 for field in block.get("fields", []))


def test_huge_error_and_metadata_still_fit_slacks_limits():
    metadata = {f"key{n}": "v" * 1000 for n in range(500)}
    data = failed_job("x" * 100_000, metadata=metadata)

    body = slack_body(event("job.failed", data))

    assert_within_slack_limits(body)
    assert "x" * 2000 in body.decode()
    assert "…```" in body.decode()  # the cut message's code block still closes


def test_template_repeating_a_huge_value_is_cut_to_the_body_budget():
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "{data.error.message}"}}
    templates = check_templates({"job.failed": {"text": "{summary}", "blocks": [section] * 50}})

    body = slack_body(event("job.failed", failed_job("y" * 100_000)), templates)

    assert_within_slack_limits(body)
    blocks = json.loads(body)["blocks"]
    assert len(blocks) == 50
    assert all(block["text"]["text"].endswith("…") for block in blocks)


def test_header_text_is_cut_to_150_characters():
    header = {"type": "header", "text": {"type": "plain_text", "text": "{data.error.message}"}}
    templates = {"job.failed": {"blocks": [header]}}

    [block] = slack_message(event("job.failed", failed_job("z" * 500)), templates)["blocks"]

    assert block["text"]["text"] == "z" * 146 + "…"


def test_unchecked_template_with_too_many_blocks_is_cut_to_50():
    divider = {"type": "divider"}

    message = slack_message(event("ping", {}), {"ping": {"text": "hi", "blocks": [divider] * 80}})

    assert len(message["blocks"]) == 50


def test_a_cut_never_leaves_half_a_link():
    templates = {"job.completed": {"text": "{data.metadata.pad} <{link}|View job>"}}
    data = job(metadata={"pad": "p" * 2990})

    text = slack_message(event("job.completed", data), templates)["text"]

    assert text == "p" * 2990 + " …"


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.85, "850 ms"),
        (1.2, "1.2 s"),
        (9.96, "10 s"),
        (45, "45 s"),
        (59.6, "1 min"),
        (90, "1 min 30 s"),
        (180, "3 min"),
        (2 * 3600 + 5 * 60, "2 h 5 min"),
        (2 * 86400 + 3600, "2 d 1 h"),
    ],
)
def test_duration_reads_naturally(seconds: float, shown: str):
    data = job(finished_at=at(seconds))

    assert slack_message(event("job.completed", data))["text"].endswith(f" succeeded in {shown}")


def test_unfinished_job_has_no_duration():
    message = slack_message(event("job.completed", job(finished_at=None)))

    assert message["text"].endswith("`job_abc` succeeded")
    assert not any(field.startswith("*Duration*") for field in fields(message))


# -- templates ----------------------------------------------------------------------------------

PRECEDENCE = {"job.failed": {"text": "exact"}, "job.*": {"text": "prefix"}, "*": {"text": "any"}}


@pytest.mark.parametrize(
    ("event_type", "chosen"),
    [("job.failed", "exact"), ("job.completed", "prefix"), ("batch.completed", "any")],
)
def test_most_specific_template_wins(event_type: str, chosen: str):
    templates = check_templates(PRECEDENCE)

    assert slack_message(event(event_type, failed_job()), templates) == {"text": chosen}


def test_without_a_matching_template_the_default_message_is_sent():
    templates = check_templates({"job.*": {"text": "jobs only"}})

    message = slack_message(event("batch.completed", batch()), templates)

    assert message["text"].startswith(":package: batch `bat_x`")


def test_placeholders_name_paths_list_indexes_and_context_values():
    template = "{event.type}/{data.id}/{duration}/{data.output.images.0.url}/{thumbnail_url}"
    templates = check_templates({"*": {"text": template}})

    text = slack_message(event("job.completed", job()), templates)["text"]

    thumb_escaped = THUMB_URL.replace("&", "&amp;")
    assert text == f"job.completed/job_abc/1.2 s/{thumb_escaped}/{thumb_escaped}"


def test_missing_paths_become_empty():
    templates = check_templates(
        {"*": {"text": "[{data.nope.x}][{data.output.images.9}][{data.error}]"}}
    )

    assert slack_message(event("job.completed", job()), templates)["text"] == "[][][]"


def test_non_text_values_become_json():
    data = job(metadata={"n": 2, "ok": True, "tags": ["a", "b"]})
    templates = check_templates(
        {"*": {"text": "{data.metadata.n} {data.metadata.ok} {data.metadata}"}}
    )

    text = slack_message(event("job.completed", data), templates)["text"]

    assert text == '2 true {"n":2,"ok":true,"tags":["a","b"]}'


def test_double_braces_are_literal_braces():
    templates = check_templates({"*": {"text": "{{data.id}} is {data.id} }}"}})

    assert (
        slack_message(event("job.completed", job()), templates)["text"] == "{data.id} is job_abc }"
    )


def test_substituted_values_are_escaped_but_template_links_work():
    data = job(metadata={"sku": "<script>&"})
    templates = check_templates({"*": {"text": "{data.metadata.sku} <{link}|View>"}})

    text = slack_message(event("job.completed", data), templates)["text"]

    assert text == f"&lt;script&gt;&amp; <{JOB_URL}|View>"


def test_summary_placeholder_is_not_escaped_twice():
    data = failed_job(error={"code": "A&B", "message": "m"})
    templates = check_templates({"*": {"text": "{summary}"}})

    text = slack_message(event("job.failed", data), templates)["text"]

    assert text == ":x: `image.analyze` job `job_abc` failed: A&amp;B"


def test_image_urls_are_substituted_unescaped():
    image = {"type": "image", "image_url": "{thumbnail_url}", "alt_text": "{data.id}"}
    templates = check_templates({"*": {"blocks": [image]}})

    [block] = slack_message(event("job.completed", job()), templates)["blocks"]

    assert block == {"type": "image", "image_url": THUMB_URL, "alt_text": "job_abc"}


def test_template_that_renders_empty_sends_the_summary_instead():
    templates = check_templates({"job.*": {"text": "{data.error.message}"}})

    message = slack_message(event("job.completed", job()), templates)

    assert message == {
        "text": ":white_check_mark: `image.transform` job `job_abc` succeeded in 1.2 s"
    }


def test_batch_output_url_is_its_results():
    templates = check_templates({"batch.*": {"text": "{output_url}|{thumbnail_url}|{link}"}})

    text = slack_message(event("batch.completed", batch()), templates)["text"]

    assert text == f"{RESULTS_URL}||{BATCH_URL}"


def test_an_unchecked_broken_template_falls_back_to_the_default():
    message = slack_message(event("job.completed", job()), {"*": {"text": "{data.id"}})

    assert message["text"].startswith(":white_check_mark:")


def test_checked_templates_are_a_copy():
    templates = {"job.failed": {"text": "x"}, "job.*": {"text": "y"}, "ping": {"text": "z"}}

    checked = check_templates(templates)
    templates["job.failed"]["text"] = "changed"

    assert checked == {"job.failed": {"text": "x"}, "job.*": {"text": "y"}, "ping": {"text": "z"}}


def section_with(text: str) -> dict[str, Any]:
    return {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


@pytest.mark.parametrize(
    ("templates", "field", "says"),
    [
        ({"job.failed": {"text": "{nope.x}"}}, "job.failed.text", "unknown root 'nope'"),
        ({"job.failed": section_with("{data.id")}, "job.failed.blocks[0].text.text", "closed"),
        ({"job.failed": {"text": "a } b"}}, "job.failed.text", "}}"),
        ({"job.failed": {"text": "{summary.x}"}}, "job.failed.text", "no fields"),
        ({"job.failed": {"text": "{data..id}"}}, "job.failed.text", "not a placeholder"),
        ({"job.failed": "text"}, "job.failed", "object"),
        ({"job.failed": {}}, "job.failed", "text or blocks"),
        ({"job.failed": {"unfurl_links": True}}, "job.failed", "text or blocks"),
        ({"job.failed": {"text": ""}}, "job.failed.text", "non-empty"),
        ({"job.failed": {"text": "x", "attachments": []}}, "job.failed.attachments", "unknown"),
        ({"job.failed": {"blocks": ["x"]}}, "job.failed.blocks[0]", "type"),
        ({"job.failed": {"blocks": [{"type": "divider"}] * 51}}, "job.failed.blocks", "50"),
        ({"Job Failed": {"text": "x"}}, "Job Failed", "event types"),
        ({f"type{n}.x": {"text": "x"} for n in range(21)}, "", "at most 20"),
        (["job.failed"], "", "object"),
    ],
)
def test_check_templates_points_at_what_is_wrong(templates: Any, field: str, says: str):
    with pytest.raises(InvalidTemplate) as raised:
        check_templates(templates)

    assert raised.value.field == field
    assert says in raised.value.message


# -- URLs and bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "is_slack"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXX", True),
        ("https://HOOKS.Slack.COM/services/T000/B000/XXXX", True),
        ("http://hooks.slack.com/services/T000/B000/XXXX", False),
        ("https://hooks.slack.com.evil.example/services/T000", False),
        ("https://hooks.slack.com@evil.example/services/T000", False),
        ("https://evil.example/?next=https://hooks.slack.com/", False),
        ("https://[::1/services", False),
        ("hooks.slack.com/services/T000", False),
    ],
)
def test_is_slack_url(url: str, is_slack: bool):
    assert is_slack_url(url) is is_slack


def test_body_is_compact_utf8_json():
    body = slack_body(event("job.completed", job(metadata={"city": "Zürich"})))

    assert "Zürich".encode() in body
    assert b'", "' not in body
    assert json.loads(body)["text"].startswith(":white_check_mark:")
