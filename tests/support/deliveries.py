"""Deliveries as a caller reads them: settled, one by id, or left dead by a failing receiver."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.jobs import transform_job
from tests.support.waiting import wait_until


def deliveries_of(api: httpx.Client, job_id: str, timeout_s: float = 20) -> list[dict[str, Any]]:
    """The job's deliveries once none is pending any more."""

    def settled() -> list[dict[str, Any]] | None:
        deliveries: list[dict[str, Any]] = api.get(f"/v1/jobs/{job_id}").json()["deliveries"]
        return deliveries if all(d["status"] != "pending" for d in deliveries) else None

    return wait_until(settled, timeout_s, f"the deliveries of {job_id} to settle")


def deliveries_of_id(api: httpx.Client, delivery_id: str, timeout_s: float = 20) -> dict[str, Any]:
    """The delivery once it is no longer pending."""

    def settled() -> dict[str, Any] | None:
        delivery: dict[str, Any] = api.get(f"/v1/deliveries/{delivery_id}").json()
        return delivery if delivery["status"] != "pending" else None

    return wait_until(settled, timeout_s, f"delivery {delivery_id} to settle")


def dead_delivery(api: httpx.Client, url: str) -> dict[str, Any]:
    """A job's only delivery, to `url`, once it is dead (the receiver must keep failing)."""
    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=url)).json()["id"]
    [delivery] = deliveries_of(api, job_id)
    assert delivery["status"] == "dead"
    return delivery
