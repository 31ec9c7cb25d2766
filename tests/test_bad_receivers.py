"""Bad receivers: each ends as a recorded failure or refusal, and the worker keeps serving others.

The stack (tests/conftest.py) tries 3 times, 300 ms apart, with a 3 s deadline per attempt, and
allows only 127.0.0.1/32 among private addresses.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jobs import error_of, transform_job
from tests.support.raw_servers import HugeBody, Resetter, Response, Scripted, TlsServer, Trickler
from tests.support.waiting import wait_until

RESPONSE_CAP = 4096  # PIXHOOK_WEBHOOK_RESPONSE_CAP_BYTES, left at its default
ATTEMPTS = 3  # PIXHOOK_WEBHOOK_RETRY_SCHEDULE=300ms,300ms


def submit(api: httpx.Client, webhook_url: str) -> str:
    response = api.post("/v1/jobs", json=transform_job(webhook_url=webhook_url))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def delivery_of(api: httpx.Client, job_id: str, timeout_s: float = 20) -> dict[str, Any]:
    """The job's one delivery with its attempt log, once it is no longer pending."""

    def settled() -> dict[str, Any] | None:
        summaries = api.get(f"/v1/jobs/{job_id}").json().get("deliveries") or []
        if not summaries:
            return None
        [summary] = summaries
        delivery: dict[str, Any] = api.get(f"/v1/deliveries/{summary['id']}").json()
        return None if delivery["status"] == "pending" else delivery

    return wait_until(settled, timeout_s, f"the delivery of job {job_id} to settle")


def errors_of(delivery: dict[str, Any]) -> list[str | None]:
    return [attempt["error_code"] for attempt in delivery["attempts"]]


def attempt_log(delivery: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(error_code, error_message) per attempt, for assertion messages."""
    return [(attempt["error_code"], attempt["error_message"]) for attempt in delivery["attempts"]]


# 1. Slow trickle


def test_slow_trickle_times_out_within_the_deadline_while_others_are_served(
    api, serve, make_receiver
):
    trickler = serve(Trickler(trickle=1, interval_s=0.5))
    slow_job = submit(api, trickler.url())
    assert trickler.holding.wait(15), "the worker never reached the trickling receiver"

    # While the trickler holds its connection, another receiver gets its webhook promptly.
    receiver = make_receiver()
    submit(api, receiver.url)
    [webhook] = receiver.wait_for(1, timeout_s=2.5)
    assert webhook.verified
    assert not trickler.released.is_set(), "the other webhook waited for the trickler"

    # The trickled attempt ends at the 3 s deadline, however many bytes keep coming.
    delivery = delivery_of(api, slow_job)
    first, second = delivery["attempts"]
    assert first["error_code"] == "TIMEOUT"
    assert first["status_code"] is None and first["error_message"]
    assert 2500 <= first["duration_ms"] < 4000
    assert trickler.bytes_trickled >= 3
    # The next attempt found the receiver well again.
    assert (second["error_code"], second["status_code"]) == (None, 200)
    assert (delivery["status"], delivery["last_error"]) == ("succeeded", None)


# 2. Huge body


def test_huge_body_of_a_success_is_recorded_up_to_the_cap(api, serve):
    server = serve(HugeBody(200, size=50_000_000))

    delivery = delivery_of(api, submit(api, server.url()))

    [attempt] = delivery["attempts"]
    assert delivery["status"] == "succeeded"
    assert (attempt["status_code"], attempt["error_code"]) == (200, None)
    excerpt = attempt["response_excerpt"]
    assert 0 < len(excerpt.encode()) <= RESPONSE_CAP
    assert set(excerpt) == {"A"}
    # The worker stopped reading: the receiver could not push the 50 MB into it.
    wait_until(lambda: len(server.bytes_sent) == 1, 10, "the worker hanging up on the huge body")
    assert server.bytes_sent[0] < 50_000_000


def test_huge_body_of_an_error_is_an_http_status_failure_with_a_capped_excerpt(api, serve):
    server = serve(HugeBody(500, size=50_000_000))

    delivery = delivery_of(api, submit(api, server.url()))

    assert (delivery["status"], delivery["last_error"]) == ("dead", "HTTP_STATUS")
    assert errors_of(delivery) == ["HTTP_STATUS"] * ATTEMPTS
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] == 500
        assert 0 < len(attempt["response_excerpt"].encode()) <= RESPONSE_CAP
        assert set(attempt["response_excerpt"]) == {"A"}


# 3. Redirect to loopback


def test_redirect_to_loopback_is_not_followed(api, serve):
    target = serve(Scripted())
    redirector = serve(
        Scripted(lambda n: Response(302, {"location": target.url("/internal/admin")}))
    )

    delivery = delivery_of(api, submit(api, redirector.url()))

    assert (delivery["status"], delivery["last_error"]) == ("dead", "REDIRECT_NOT_FOLLOWED")
    assert errors_of(delivery) == ["REDIRECT_NOT_FOLLOWED"] * ATTEMPTS
    assert {attempt["status_code"] for attempt in delivery["attempts"]} == {302}
    assert len(redirector.requests) == ATTEMPTS
    assert (target.connections, target.requests) == (0, [])


# 4. Connection reset


def test_connection_reset_is_recorded_as_a_connection_failure(api, serve):
    server = serve(Resetter())

    delivery = delivery_of(api, submit(api, server.url()))

    assert delivery["status"] == "dead"
    assert len(delivery["attempts"]) == ATTEMPTS
    for attempt in delivery["attempts"]:
        assert attempt["error_code"] in ("CONNECTION_RESET", "CONNECT_ERROR")
        assert attempt["status_code"] is None and attempt["error_message"]
    assert delivery["last_error"] == delivery["attempts"][-1]["error_code"]
    assert len(server.requests) == ATTEMPTS  # each attempt got as far as sending its request


# 5. Invalid TLS


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for CN=localhost."""
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
        + ["-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_self_signed_certificate_is_a_tls_error(api, serve, self_signed):
    server = serve(TlsServer(self_signed))

    delivery = delivery_of(api, submit(api, server.url(scheme="https")))

    assert (delivery["status"], delivery["last_error"]) == ("dead", "TLS_ERROR")
    assert errors_of(delivery) == ["TLS_ERROR"] * ATTEMPTS
    assert all(attempt["error_message"] for attempt in delivery["attempts"])
    assert server.handshake_errors and server.requests == []


# 6. The guard at submission (tests/test_connector.py covers what only DNS can tell)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.2]:80/",
        "http://0.0.0.0:{port}/hook",
        "http://localhost:{port}/hook",
        "http://127.0.0.2:{port}/hook",  # only 127.0.0.1/32 is allowed
        # Addresses spelled as names, which getaddrinfo would turn into 127.0.0.2,
        # 169.254.169.254 and 0.0.0.0: judged as the addresses they are.
        "http://0x7f000002:{port}/hook",
        "http://2852039166/latest/meta-data",
        "http://127.2:{port}/hook",
        "http://0:{port}/hook",
    ],
)
def test_forbidden_destination_is_refused_at_submission(api, serve, url):
    server = serve(Scripted())

    response = api.post("/v1/jobs", json=transform_job(webhook_url=url.format(port=server.port)))

    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], error["field"]) == ("URL_NOT_ALLOWED", "webhook_url")
    assert server.connections == 0


def addresses_of(name: str) -> set[str]:
    """What this machine's resolver (the one the workers use) makes of `name`."""
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in infos}


def test_name_that_does_not_resolve_is_a_dns_failure_retried_then_dead(api):
    name = "nonexistent.invalid"  # .invalid names never resolve (RFC 2606)
    if addresses_of(name):
        pytest.skip(f"{name} resolves on this machine: {addresses_of(name)}")

    delivery = delivery_of(api, submit(api, f"http://{name}/hook"))

    assert (delivery["status"], delivery["last_error"]) == ("dead", "DNS_FAILURE")
    assert errors_of(delivery) == ["DNS_FAILURE"] * ATTEMPTS


# 7. 410 and 429


def test_gone_is_final_after_one_attempt(api, serve):
    server = serve(Scripted(lambda n: Response(410)))

    delivery = delivery_of(api, submit(api, server.url()))

    assert (delivery["status"], delivery["last_error"]) == ("dead", "GONE")
    [attempt] = delivery["attempts"]
    assert (attempt["status_code"], attempt["error_code"]) == (410, "GONE")
    assert len(server.requests) == 1


def test_throttled_delivery_waits_for_retry_after(api, serve):
    server = serve(
        Scripted(lambda n: Response(429, {"retry-after": "1"}) if n == 0 else Response(200))
    )

    delivery = delivery_of(api, submit(api, server.url()))

    assert delivery["status"] == "succeeded"
    first, second = delivery["attempts"]
    assert (first["status_code"], first["error_code"]) == (429, "THROTTLED")
    assert (second["status_code"], second["error_code"]) == (200, None)
    throttled, accepted = server.requests
    assert 0.95 <= accepted.arrived_at - throttled.arrived_at < 5


# 8. Still serving


def test_worker_still_delivers_after_the_bad_receivers(api, stack, make_receiver):
    receiver = make_receiver()

    job_id = submit(api, receiver.url)

    [webhook] = receiver.wait_for(1, timeout_s=10)
    assert webhook.verified
    assert delivery_of(api, job_id)["status"] == "succeeded"
    assert stack.processes.exited() == {}
