"""The operator console over HTTP, as a browser without JavaScript would use it: sign-in, cookie
flags, CSRF on every form, what each kind of session may see, escaping, and paging."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable

import httpx
import pytest
from PIL import Image
from redis import Redis

from tests.support.batches import transform_item, wait_for_batch
from tests.support.cli import pixhook
from tests.support.console import sign_in
from tests.support.deliveries import deliveries_of
from tests.support.in_process import InProcessApi
from tests.support.jobs import transform_job, wait_for_status
from tests.support.openai_standin import Answer
from tests.support.raw_servers import Response, Scripted
from tests.support.stack_env import STACK_ENV
from tests.support.webhook_receiver import Receiver

PASSWORD = STACK_ENV["PIXHOOK_CONSOLE_PASSWORD"]


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


# The console, the API and both workers in this process: nothing here crosses a process.


@pytest.fixture
def app(app_with_workers: InProcessApi) -> InProcessApi:
    return app_with_workers


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


@pytest.fixture
def make_receiver(in_process_receivers: Callable[..., Receiver]) -> Callable[..., Receiver]:
    return in_process_receivers


@pytest.fixture
def operator(app: InProcessApi) -> httpx.Client:
    """A browser signed in with the console password."""
    http = app.http()
    assert sign_in(http, PASSWORD).status_code == 303
    return http


def test_pages_need_a_session(app: InProcessApi):
    with app.http() as http:
        for path in ("/console/overview", "/console/jobs", "/console/dlq", "/console/endpoints"):
            response = http.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == f"/console/login?next={path.replace('/', '%2F')}"


def test_signing_in_sets_a_strict_httponly_cookie(app: InProcessApi):
    with app.http() as http:
        response = sign_in(http, PASSWORD)

        assert response.status_code == 303
        assert response.headers["location"] == "/console/overview"
        cookie = next(
            v
            for k, v in response.headers.multi_items()
            if k == "set-cookie" and "pixhook_console=" in v
        )
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        overview = http.get("/console/overview")
        assert overview.status_code == 200 and "Dead letters" in overview.text
        csp = overview.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp


def test_a_wrong_secret_is_refused_and_repeated_ones_lock_the_form(app: InProcessApi):
    with app.http() as http:
        try:
            refused = sign_in(http, "not the password")
            assert refused.status_code == 401 and "neither the console password" in refused.text
            assert "pixhook_console=" not in refused.headers.get("set-cookie", "")
            for _ in range(9):
                sign_in(http, "still wrong")
            locked = sign_in(http, PASSWORD)
            assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        finally:
            # Every test signs in from 127.0.0.1: the lock must not outlive this test.
            Redis.from_url(app.redis_url).delete("pixhook:console:failed-logins:127.0.0.1")


def test_the_login_form_needs_its_own_token(app: InProcessApi):
    with app.http() as http:
        forged = http.post("/console/login", data={"login_token": "x", "secret": PASSWORD})

        assert forged.status_code == 403 and "pixhook_console=" not in str(forged.headers)


def test_a_form_without_the_csrf_token_changes_nothing(operator: httpx.Client, api, make_receiver):
    receiver = make_receiver(respond=lambda n: 500)
    job = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    [delivery] = deliveries_of(api, job["id"])
    assert delivery["status"] == "dead"

    forged = operator.post(f"/console/deliveries/{delivery['id']}/retry", data={"csrf": "guess"})

    assert forged.status_code == 403 and "form has expired" in forged.text
    assert api.get(f"/v1/deliveries/{delivery['id']}").json()["status"] == "dead"
    page = operator.get(f"/console/deliveries/{delivery['id']}")
    done = operator.post(
        f"/console/deliveries/{delivery['id']}/retry", data={"csrf": csrf_of(page)}
    )
    assert done.status_code == 303
    assert api.get(f"/v1/deliveries/{delivery['id']}").json()["replays"] == 1


def test_a_delivery_page_shows_what_was_sent_and_what_came_back(
    operator: httpx.Client, api, make_receiver
):
    receiver = make_receiver(respond=lambda n: 500)
    job = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    [delivery] = deliveries_of(api, job["id"])

    page = operator.get(f"/console/deliveries/{delivery['id']}").text

    [first, *_] = receiver.wait_for(1)
    assert page.count('<tr class="failed">') == delivery["attempt_count"]
    assert f"webhook-id: {first.webhook_id}" in page
    assert "webhook-signature: v1," in page and "user-agent: pixhook-webhooks" in page
    assert "&#34;type&#34;: &#34;job.completed&#34;" in page or '"type": "job.completed"' in page
    assert "HTTP_STATUS" in page and ">500<" in page


def test_a_client_session_sees_only_its_own_records(app: InProcessApi, api):
    theirs = api.post("/v1/jobs", json=transform_job()).json()
    made = app.new_client("console-client")
    with app.http(made.api_key) as own_api, app.http() as http:
        mine = own_api.post("/v1/jobs", json=transform_job()).json()
        wait_for_status(own_api, mine["id"])
        assert sign_in(http, made.api_key).status_code == 303

        listed = http.get("/console/jobs").text
        assert mine["id"] in listed and theirs["id"] not in listed
        assert http.get(f"/console/jobs/{theirs['id']}").status_code == 404
        assert http.get(f"/console/jobs/{mine['id']}").status_code == 200
        assert "Client" not in http.get("/console/jobs").text.split("<table>")[0]


def test_values_from_callers_are_escaped(operator: httpx.Client, api):
    job = api.post("/v1/jobs", json=transform_job(metadata={"sku": "<script>alert(1)</script>"}))
    job_id = job.json()["id"]
    wait_for_status(api, job_id)

    page = operator.get(f"/console/jobs/{job_id}").text

    assert "<script>" not in page and "\\u003cscript\\u003e" in page


def test_job_pages_page_by_cursor_and_filter(operator: httpx.Client, app: InProcessApi):
    made = app.new_client("console-paging")
    record = {"id": made.client.id}
    with app.http(made.api_key) as own_api:
        ids = [own_api.post("/v1/jobs", json=transform_job()).json()["id"] for _ in range(60)]
        for job_id in ids:
            wait_for_status(own_api, job_id)

    first = operator.get("/console/jobs", params={"client": record["id"]})
    older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert older
    second = operator.get(older[1].replace("&amp;", "&"))

    shown = re.findall(r'<a href="/console/jobs/(job_[^"]+)">', first.text + second.text)
    assert shown == list(reversed(ids))  # newest first, each once, across the two pages
    assert 'rel="next"' not in second.text
    failed = operator.get("/console/jobs", params={"client": record["id"], "status": "failed"})
    assert "No jobs match." in failed.text
    # Neither a type nor `succeeded` has an index of its own: checked on the records walked.
    done = {"client": record["id"], "status": "succeeded", "type": "image.transform"}
    first_done = operator.get("/console/jobs", params=done).text
    assert re.findall(r'<a href="/console/jobs/(job_[^"]+)">', first_done) == shown[:50]
    analyze = operator.get("/console/jobs", params={**done, "type": "image.analyze"})
    assert "No jobs match." in analyze.text


def test_jobs_are_found_by_their_reference(operator: httpx.Client, app: InProcessApi):
    made = app.new_client("console-reference")
    with app.http(made.api_key) as own_api:
        wanted = own_api.post("/v1/jobs", json=transform_job(reference="SKU-77")).json()["id"]
        own_api.post("/v1/jobs", json=transform_job(reference="SKU-78"))

    found = operator.get("/console/jobs", params={"client": made.client.id, "reference": "SKU-77"})

    assert re.findall(r'<a href="/console/jobs/(job_[^"]+)">', found.text) == [wanted]
    assert 'value="SKU-77"' in found.text


def test_a_jobs_reference_and_metadata_show_in_the_list_and_on_its_page(
    operator: httpx.Client, app: InProcessApi
):
    made = app.new_client("console-reference-shown")
    metadata = {"category": "shoes", "row": 7, "colours": ["red"], "size": "42"}
    with app.http(made.api_key) as own_api:
        body = transform_job(reference="SKU-<b>9</b>", metadata=metadata)
        job_id = own_api.post("/v1/jobs", json=body).json()["id"]

    listed = operator.get("/console/jobs", params={"client": made.client.id}).text
    page = operator.get(f"/console/jobs/{job_id}").text

    link = f"/console/jobs?reference=SKU-%3Cb%3E9%3C/b%3E&amp;client={made.client.id}"
    assert f'<a href="{link}">SKU-&lt;b&gt;9&lt;/b&gt;</a>' in listed
    assert "category=shoes, row=7, colours=[&#34;red&#34;] … and 1 more" in listed
    assert "<dt>Reference</dt><dd><code>SKU-&lt;b&gt;9&lt;/b&gt;</code></dd>" in page
    assert "<b>9</b>" not in listed + page


def test_a_batch_page_lists_its_failures_by_reference_with_their_jobs(
    operator: httpx.Client, api: httpx.Client, serve
):
    missing = serve(Scripted(lambda n: Response(404))).url("/gone.jpg")
    items = [
        transform_item() | {"reference": "SKU-OK"},
        {"input": {"image": {"url": missing}, "width": 20}, "reference": "SKU-<i>"},
        transform_item(width=-3) | {"reference": "SKU-REFUSED"},
    ]
    answer = api.post("/v1/batches", json={"type": "image.transform", "items": items})
    batch = wait_for_batch(api, answer.json()["id"])
    job_id = f"job_{batch['id'].removeprefix('bat_')}_1"

    page = operator.get(f"/console/batches/{batch['id']}")
    from_job = operator.get(f"/console/jobs/{job_id}").text

    assert page.status_code == 200
    rows = re.findall(r"<tr>\s*<td>#(\d+)</td>\s*<td>([^<]*)</td>.*?</tr>", page.text, re.S)
    assert rows == [("1", "SKU-&lt;i&gt;"), ("2", "SKU-REFUSED")]
    assert f'<a href="/console/jobs/{job_id}">' in page.text
    assert "refused at intake" in page.text
    assert f'<a href="/console/batches/{batch["id"]}">' in from_job
    assert operator.get("/console/batches/bat_nope").status_code == 404


def test_purging_asks_first(operator: httpx.Client, api, make_receiver):
    receiver = make_receiver(respond=lambda n: 410)
    job = api.post("/v1/jobs", json=transform_job(webhook_url=receiver.url)).json()
    [delivery] = deliveries_of(api, job["id"])
    dlq = operator.get("/console/dlq", params={"host": "127.0.0.1"})
    form = {"csrf": csrf_of(dlq), "ids": [delivery["id"]], "action": "purge-selected"}

    confirm = operator.post("/console/dlq", data=form)

    assert confirm.status_code == 200 and "Purge 1 dead delivery?" in confirm.text
    assert api.get(f"/v1/deliveries/{delivery['id']}").status_code == 200
    purged = operator.post(
        "/console/dlq/purge",
        data={"csrf": csrf_of(dlq), "ids": [delivery["id"]], "confirm": "yes"},
    )
    assert purged.status_code == 303 and "done=purged&count=1" in purged.headers["location"]
    assert api.get(f"/v1/deliveries/{delivery['id']}").status_code == 404


def test_the_overview_counts_the_last_hour(operator: httpx.Client, api):
    wait_for_status(api, api.post("/v1/jobs", json=transform_job()).json()["id"])

    page = operator.get("/console/overview").text

    ended = re.search(r"jobs ended: (\d+)", page)
    assert ended and int(ended[1]) >= 1
    assert "<polyline" in page


def test_a_disabled_endpoint_is_enabled_from_the_console(app: InProcessApi):
    made = app.new_client("console-endpoints")
    record = {"id": made.client.id, "api_key": made.api_key}
    with app.http(made.api_key) as own_api, app.http() as http:
        endpoint = own_api.post("/v1/endpoints", json={"url": "https://example.com/hook"}).json()
        own_api.patch(f"/v1/endpoints/{endpoint['id']}", json={"enabled": False})
        assert sign_in(http, record["api_key"]).status_code == 303
        page = http.get("/console/endpoints")
        assert "disabled" in page.text

        enabled = http.post(
            f"/console/endpoints/{record['id']}/{endpoint['id']}/enable",
            data={"csrf": csrf_of(page)},
        )

        assert enabled.status_code == 303
        after = own_api.get(f"/v1/endpoints/{endpoint['id']}").json()
        assert after["enabled"] is True and after["disabled_reason"] is None
        assert after["updated_at"] > endpoint["updated_at"]


# Sessions end: signing out, a changed console password, a key that stops working.


def session_cookie(http: httpx.Client) -> str:
    cookie = http.cookies.get("pixhook_console")
    assert cookie
    return cookie


def replayed(app: InProcessApi, cookie: str) -> httpx.Response:
    """The overview, asked for by another browser holding a copy of `cookie`."""
    with app.http() as other:
        other.cookies.set("pixhook_console", cookie, path="/console")
        return other.get("/console/overview")


def test_signing_out_ends_the_session_for_a_copied_cookie_too(app: InProcessApi, operator):
    cookie = session_cookie(operator)
    assert replayed(app, cookie).status_code == 200

    csrf = csrf_of(operator.get("/console/overview"))
    assert operator.post("/console/logout", data={"csrf": csrf}).status_code == 303

    assert replayed(app, cookie).status_code == 303
    assert operator.get("/console/overview").status_code == 303


def test_a_client_session_ends_when_its_key_stops_working(app: InProcessApi):
    made = app.new_client("console-rotation")
    with app.http() as http:
        assert sign_in(http, made.api_key).status_code == 303
        assert http.get("/console/overview").status_code == 200

        rotated = pixhook(app, "clients", "rotate-key", made.client.id)
        assert rotated.returncode == 0, rotated.stderr

        assert http.get("/console/overview").status_code == 303
        new_key = rotated.stdout.split()[1]
        assert sign_in(http, new_key).status_code == 303
        assert http.get("/console/overview").status_code == 200


def test_operator_sessions_end_when_the_console_password_changes(
    make_app: Callable[..., InProcessApi], app: InProcessApi, operator
):
    cookie = session_cookie(operator)
    # Another replica: the same Redis and secret key, the new password.
    changed = make_app(
        PIXHOOK_SECRET_KEY=app.settings.api.secret_key,
        PIXHOOK_CONSOLE_PASSWORD="a-new-console-password",
    )

    assert replayed(changed, cookie).status_code == 303
    assert replayed(app, cookie).status_code == 200  # where the old password still holds


def test_the_operator_sees_refused_keys_and_puts_them_back(
    app: InProcessApi, operator: httpx.Client, api, openai_standin
):
    openai_standin.script([Answer(401)])
    refused = api.post("/v1/jobs", json=analyze_job())
    wait_for_status(api, refused.json()["id"])

    page = operator.get("/console/providers")
    put_back = operator.post(
        "/console/providers/openai/reinstate", data={"csrf": csrf_of(page), "key": "ndin"}
    )
    after = operator.get("/console/providers").text

    assert page.status_code == 200
    assert "refused (401)" in page.text and "Put back in rotation" in page.text
    assert put_back.status_code == 303
    assert "in rotation" in after and "refused" not in after


def test_a_client_session_has_no_providers_page(app: InProcessApi):
    made = app.new_client("console-keys")
    with app.http() as http:
        assert sign_in(http, made.api_key).status_code == 303

        assert http.get("/console/providers").status_code == 404
        assert "/console/providers" not in http.get("/console/overview").text


def analyze_job() -> dict[str, object]:
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(photo, "PNG")
    image = {"base64": base64.b64encode(photo.getvalue()).decode()}
    return {"type": "image.analyze", "input": {"image": image, "provider": "openai"}}
