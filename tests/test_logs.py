"""Structured logs: one JSON object a line, and one request id from the API to the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.cli.devstack import RunningStack, local_stack
from service.logs import request_id
from tests.support.jobs import transform_job, wait_for_status
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """This module's own stack, whose logs hold only this module's requests."""
    with local_stack(tmp_path_factory.mktemp("logs"), STACK_ENV) as running:
        yield running


def log_lines(stack: RunningStack, name: str) -> list[dict[str, Any]]:
    text = (stack.files_dir.parent / "logs" / f"{name}.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def logged(stack: RunningStack, name: str, found: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether a whole line of that log satisfies `found` (one still being written is skipped)."""
    text = (stack.files_dir.parent / "logs" / f"{name}.log").read_text()
    whole = text[: text.rfind("\n") + 1]
    return any(found(json.loads(line)) for line in whole.splitlines())


def lines_about(stack: RunningStack, name: str, job_id: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(stack, name) if line.get("job_id") == job_id]


def test_every_line_is_a_json_object_with_the_basic_fields(api, stack):
    api.get("/readyz")
    # The request's line is written as its response goes out, so just after the caller has it.
    wait_until(
        lambda: logged(stack, "api", lambda line: line["message"].startswith("GET /readyz 200")),
        10,
        "the request's line",
    )

    for name in ("api", "worker-jobs", "worker-deliveries"):
        lines = log_lines(stack, name)
        assert lines, name
        for line in lines:
            assert {"time", "level", "logger", "message"} <= line.keys(), line
    assert any(line["message"].startswith("GET /readyz 200") for line in log_lines(stack, "api"))


def test_the_response_echoes_the_request_id_it_was_given(api):
    response = api.get("/readyz", headers={"x-request-id": "trace-abc.123"})

    assert response.headers["x-request-id"] == "trace-abc.123"


@pytest.mark.parametrize("given", [None, "", "x" * 129, "has space", "tab\there"])
def test_a_missing_or_unusable_request_id_is_replaced(api, given):
    headers = {} if given is None else {"x-request-id": given}

    echoed = api.get("/readyz", headers=headers).headers["x-request-id"]

    assert echoed != given and echoed.startswith("req_")


def test_request_ids_are_validated():
    assert request_id("a" * 128) == "a" * 128
    assert request_id("a" * 129).startswith("req_")


def test_api_and_worker_lines_for_one_job_share_its_request_id(api, stack):
    rid = f"trace-{time.time_ns()}"
    response = api.post("/v1/jobs", json=transform_job(), headers={"x-request-id": rid})
    job_id = response.json()["id"]
    assert response.headers["x-request-id"] == rid
    wait_for_status(api, job_id)
    # The worker logs the job's end after storing its final status.
    succeeded = f"job {job_id} succeeded"
    wait_until(
        lambda: logged(stack, "worker-jobs", lambda line: line["message"] == succeeded),
        10,
        "the worker's last line",
    )

    api_lines = lines_about(stack, "api", job_id)
    worker_lines = lines_about(stack, "worker-jobs", job_id)

    assert api_lines and worker_lines
    assert {line["request_id"] for line in api_lines + worker_lines} == {rid}
    assert {line["client_id"] for line in worker_lines} == {stack.client.client.id}
    assert any(line["message"] == f"job {job_id} succeeded" for line in worker_lines)
    # Every API line of the request names its client, the request line itself included.
    request_lines = [line for line in log_lines(stack, "api") if line.get("request_id") == rid]
    assert len(request_lines) >= 2
    assert {line.get("client_id") for line in request_lines} == {stack.client.client.id}


def test_a_dead_deliverys_line_names_the_delivery_and_its_client(api, stack, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()["id"]
    wait_for_status(api, job_id)

    dead = wait_until(
        lambda: api.get("/v1/deliveries", params={"status": "dead"}).json()["data"],
        20,
        "the delivery to die",
    )

    # Its line is written after the attempt is recorded.
    def died(line: dict[str, Any]) -> bool:
        return line.get("delivery_id") == dead[0]["id"] and "dead after" in line["message"]

    wait_until(lambda: logged(stack, "worker-deliveries", died), 10, "the dead delivery's line")

    lines = [
        line for line in log_lines(stack, "worker-deliveries") if "dead after" in line["message"]
    ]
    assert {line["delivery_id"] for line in lines} >= {dead[0]["id"]}
    assert {line["client_id"] for line in lines} == {stack.client.client.id}
