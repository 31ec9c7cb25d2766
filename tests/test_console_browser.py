"""The console in a real browser: Debian's headless Chromium, driven by Playwright (no browser is
downloaded). A failing test leaves a screenshot of the page in test-artifacts/screenshots/."""

from __future__ import annotations

import base64
import io
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.cli.devstack import RunningStack
from tests.support.batches import wait_for_batch
from tests.support.deliveries import deliveries_of
from tests.support.jobs import transform_job, wait_for_status
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until

# `make test` installs Debian's package and says where it is.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# Without the networking flags Chromium keeps calling Google's services, which a closed
# network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}.png"
        opened.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failing page: {path}")
    context.close()


def sign_in(page: Page, stack: RunningStack, secret: str) -> None:
    page.goto(f"{stack.api_url}/console/overview")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("Password or API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def test_an_operator_finds_a_dead_delivery_replays_it_and_sees_it_succeed(
    page: Page, stack: RunningStack, api, make_receiver
):
    healthy = {"now": False}
    receiver = make_receiver(respond=lambda n: 200 if healthy["now"] else 503)
    job = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    [delivery] = deliveries_of(api, job["id"])
    assert delivery["status"] == "dead"

    sign_in(page, stack, STACK_ENV["PIXHOOK_CONSOLE_PASSWORD"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("link", name="Dead letters").click()
    page.get_by_placeholder("cms.example.com").fill("127.0.0.1")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row").filter(has_text=delivery["id"])
    expect(row).to_contain_text("HTTP_STATUS (503)")

    healthy["now"] = True
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Replay selected").click()
    expect(page.get_by_role("status")).to_have_text("Requeued 1 dead deliveries.")

    page.goto(f"{stack.api_url}/console/deliveries/{delivery['id']}")

    def succeeded() -> bool:
        page.reload()  # the page shows the delivery as it was when loaded
        return page.locator("#delivery-status").inner_text() == "succeeded"

    wait_until(succeeded, 10, "the replayed delivery to succeed", poll_s=0.2)
    expect(page.locator("tr.ok")).to_contain_text("200")
    assert receiver.requests[-1].answered == 200


def test_a_job_page_shows_its_output_and_its_deliveries(
    page: Page, stack: RunningStack, api, make_receiver
):
    receiver = make_receiver()
    job = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    wait_for_status(api, job["id"])
    deliveries_of(api, job["id"])

    sign_in(page, stack, STACK_ENV["PIXHOOK_CONSOLE_PASSWORD"])
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("Job id").fill(job["id"])
    page.get_by_role("button", name="Find").click()

    expect(page.get_by_role("heading", name=job["id"])).to_be_visible()
    thumbnail = page.get_by_role("img", name="default")
    expect(thumbnail).to_be_visible()
    # Loaded, not merely present: the signed link and the console's CSP let it through.
    assert thumbnail.evaluate("img => img.naturalWidth") == 100
    expect(page.get_by_role("row").filter(has_text="job.completed")).to_contain_text("succeeded")


def test_signing_out_ends_the_session(page: Page, stack: RunningStack):
    sign_in(page, stack, STACK_ENV["PIXHOOK_CONSOLE_PASSWORD"])
    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"{stack.api_url}/console/jobs")
    expect(page).to_have_url(re.compile(r"/console/login"))


def budgeted_items(count: int) -> list[dict[str, Any]]:
    """Analyses of photos no earlier run sent (the stack's Redis outlives a test), each paid."""
    items = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), tuple(secrets.token_bytes(3))).save(buffer, "PNG")
        data = base64.b64encode(buffer.getvalue()).decode()
        items.append({"input": {"image": {"base64": data}, "provider": "openai"}})
    return items


def test_an_operator_sees_a_batch_paused_for_its_budget_and_resumes_it(
    page: Page, stack: RunningStack, api
):
    # gpt-4o-mini's list price makes each call ~$0.0001: the first one reaches the budget.
    body = {"type": "image.analyze", "items": budgeted_items(3), "concurrency": 1}
    created = api.post("/v1/batches", json=body | {"max_cost": 0.0001}).json()
    paused = wait_for_batch(api, created["id"])
    assert paused["status"] == "paused"

    sign_in(page, stack, STACK_ENV["PIXHOOK_CONSOLE_PASSWORD"])
    page.goto(f"{stack.api_url}/console/batches/{created['id']}")
    expect(page.locator("#batch-status")).to_have_text("paused")
    expect(page.locator("#paused")).to_contain_text("its budget is $0.0001")
    expect(page.locator("#batch-cost")).to_have_text(
        re.compile(r"^\$0\.000\d+ of a \$0\.0001 budget$")
    )
    page.get_by_label("New budget (USD)").fill("1")
    page.get_by_role("button", name="Resume").click()

    expect(page.get_by_role("status")).to_contain_text("Resumed")
    batch = wait_for_batch(api, created["id"])
    assert batch["status"] == "completed" and batch["counts"]["succeeded"] == 3
    page.reload()
    expect(page.locator("#batch-status")).to_have_text("completed")
    page.get_by_role("link", name="Usage").click()
    expect(page.locator(f"#usage-{stack.client.client.id} .total-cost")).not_to_have_text("$0")
