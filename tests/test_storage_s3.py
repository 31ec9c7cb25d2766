"""S3Storage against moto's S3 server over real HTTP: on its own, and behind a whole stack."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.cli.devstack import RunningStack, free_port, local_stack, stop_process, wait_for
from service.config import ConfigError, Settings
from service.errors import NotFound, ServiceUnavailable
from service.storage import (
    DEFAULT_PUBLIC_CACHE_CONTROL,
    MAX_PRESIGN_S,
    S3Storage,
    job_file_key,
    open_storage,
    output_key,
    s3_client,
)
from tests.support.cdn_standin import CdnStandIn
from tests.support.images import image_bytes
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.openai_standin import API_KEY, OpenAIStandIn
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

BUCKET = "pixhook-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m moto.server` on a free loopback port, with the test bucket created."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path: Path = tmp_path_factory.mktemp("moto") / "moto.log"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **CREDENTIALS}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: _answers(url), "moto_server", 30, process)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def s3(moto_url: str) -> Iterator[Any]:
    """A boto3 client on moto, made through boto3's usual credential chain (the env vars)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        client = s3_client(moto_url, "us-east-1")
    try:
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        client.close()


def object_keys(s3: Any, prefix: str) -> set[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in listed.get("Contents", [])}


def test_put_get_and_presigned_url_round_trip(s3):
    storage = S3Storage(s3, BUCKET, "unit", ttl_s=600)
    key = job_file_key("cl_round", "job_round", time.time(), "default.png")
    data = image_bytes((40, 30), fmt="PNG")

    asyncio.run(storage.put(key, data))

    assert asyncio.run(storage.get(key)) == data
    url = storage.url(key, "image/png")
    assert url.startswith(f"{s3.meta.endpoint_url}/{BUCKET}/unit/cl_round/")
    assert "X-Amz-Expires=600" in url
    downloaded = httpx.get(url)
    assert downloaded.status_code == 200
    assert downloaded.content == data
    assert downloaded.headers["content-type"] == "image/png"
    stored = s3.head_object(Bucket=BUCKET, Key=f"unit/{key}")
    assert stored["ContentType"] == "image/png"  # guessed from the key's extension
    assert stored["CacheControl"] == "private, max-age=600"


def test_explicit_media_type_is_stored(s3):
    storage = S3Storage(s3, BUCKET, "unit", ttl_s=600)

    asyncio.run(storage.put("cl_x/input", b"raw", media_type="application/octet-stream"))

    stored = s3.head_object(Bucket=BUCKET, Key="unit/cl_x/input")
    assert stored["ContentType"] == "application/octet-stream"


def test_missing_key_is_not_found(s3):
    storage = S3Storage(s3, BUCKET, "unit", ttl_s=600)

    with pytest.raises(NotFound) as caught:
        asyncio.run(storage.get("cl_none/2020/01/01/job_none/default.png"))

    assert caught.value.code == "FILE_NOT_FOUND"


def test_missing_bucket_is_a_storage_outage_not_a_crash(s3):
    storage = S3Storage(s3, "no-such-bucket", "", ttl_s=600)

    with pytest.raises(ServiceUnavailable) as caught:
        asyncio.run(storage.put("cl_x/input", b"raw"))

    assert (caught.value.code, caught.value.status_code) == ("STORAGE_UNAVAILABLE", 503)


def test_keys_live_under_the_prefix(s3):
    storage = S3Storage(s3, BUCKET, "/nested/prefix/", ttl_s=600)

    asyncio.run(storage.put("cl_p/2024/05/06/job_p/default.webp", b"webp"))

    assert object_keys(s3, "nested/") == {"nested/prefix/cl_p/2024/05/06/job_p/default.webp"}
    bare = S3Storage(s3, BUCKET, "", ttl_s=600)
    assert asyncio.run(bare.get("nested/prefix/cl_p/2024/05/06/job_p/default.webp")) == b"webp"


def test_presigned_expiry_is_capped_at_seven_days(s3):
    storage = S3Storage(s3, BUCKET, "unit", ttl_s=30 * 86400)

    assert f"X-Amz-Expires={MAX_PRESIGN_S}" in storage.url("any/key.png", "image/png")


def test_s3_storage_does_not_serve_file_links(s3):
    with pytest.raises(NotFound) as caught:
        S3Storage(s3, BUCKET, "unit", ttl_s=600).resolve_link("anything")

    assert caught.value.code == "FILE_NOT_FOUND"


def test_open_storage_picks_by_scheme(tmp_path, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    local = open_storage(f"local:{tmp_path}", "k" * 32, 60, "http://api")
    assert local.url("a/b.png", "image/png").startswith("http://api/files/")

    remote = open_storage(
        "s3://some-bucket/a/b", "k" * 32, 60, "http://api", s3_endpoint_url="http://127.0.0.1:9"
    )
    assert isinstance(remote, S3Storage)
    assert (remote.bucket, remote.prefix) == ("some-bucket", "a/b")
    remote.close()


@pytest.mark.parametrize("spec", ["s3://bucket", "s3://bucket/", "s3://my.bucket-1/a/b/c"])
def test_settings_accept_s3_urls(spec):
    assert Settings.from_env({"PIXHOOK_STORAGE": spec}).storage.location == spec


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PIXHOOK_STORAGE", "s3://", "names no bucket"),
        ("PIXHOOK_STORAGE", "s3:///prefix", "names no bucket"),
        ("PIXHOOK_STORAGE", "s3://Bad_Bucket/x", "not an S3 bucket name"),
        ("PIXHOOK_STORAGE", "gs://bucket", "neither local:DIR nor s3://"),
        ("PIXHOOK_S3_ENDPOINT_URL", "minio:9000", "http"),
        ("PIXHOOK_S3_PUBLIC_BASE_URL", "cdn.example.com", "http"),
        ("PIXHOOK_S3_PUBLIC_BASE_URL", "https://cdn.example.com", "need S3 storage"),
    ],
)
def test_settings_refuse_unusable_storage(variable, value, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})

    assert caught.value.variable == variable
    assert message in str(caught.value)


def test_s3_settings_are_read():
    settings = Settings.from_env(
        {"PIXHOOK_S3_ENDPOINT_URL": "http://minio:9000/", "PIXHOOK_S3_REGION": "eu-west-3"}
    )

    assert (settings.storage.s3_endpoint_url, settings.storage.s3_region) == (
        "http://minio:9000",
        "eu-west-3",
    )
    assert Settings().storage.s3_region == "us-east-1"


def stack_on_s3(workdir: Path, endpoint: str, prefix: str, **env: str) -> Iterator[RunningStack]:
    storage = {"PIXHOOK_STORAGE": f"s3://{BUCKET}/{prefix}", "PIXHOOK_S3_ENDPOINT_URL": endpoint}
    with local_stack(workdir, storage | CREDENTIALS | env) as running:
        yield running


@pytest.fixture(scope="module")
def s3_stack(
    tmp_path_factory: pytest.TempPathFactory, moto_url: str, s3: Any
) -> Iterator[RunningStack]:
    yield from stack_on_s3(tmp_path_factory.mktemp("s3-stack"), moto_url, "pixhook")


def api_of(stack: RunningStack) -> httpx.Client:
    headers = {"authorization": f"Bearer {stack.client.api_key}"}
    return httpx.Client(base_url=stack.api_url, headers=headers, timeout=30)


@pytest.fixture
def s3_api(s3_stack: RunningStack) -> Iterator[httpx.Client]:
    with api_of(s3_stack) as client:
        yield client


def test_transform_job_outputs_a_presigned_s3_url(s3_stack, s3_api, s3, moto_url):
    response = s3_api.post("/v1/jobs", json=transform_job(image_bytes((400, 300))))
    assert response.status_code == 202, response.text
    job = wait_for_status(s3_api, response.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    [image] = job["output"]["images"]
    url = image["url"]
    assert url.startswith(f"{moto_url}/{BUCKET}/pixhook/")
    assert "X-Amz-Signature=" in url
    downloaded = httpx.get(url)
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(downloaded.content)).size == (100, 75)

    day = datetime.fromisoformat(job["created_at"]).strftime("%Y/%m/%d")
    folder = f"pixhook/{s3_stack.client.client.id}/{day}/{job['id']}/"
    assert object_keys(s3, folder) == {f"{folder}input", f"{folder}default.png"}


def test_files_route_does_not_serve_s3_storage(s3_api):
    response = s3_api.get("/files/some-token")

    assert response.status_code == 404
    assert error_of(response)["code"] == "FILE_NOT_FOUND"


def test_a_file_written_in_parts_joins_them_in_order(s3):
    storage = S3Storage(s3, BUCKET, "unit", ttl_s=600)
    key = "cl_parts/2024/05/06/bat_parts/results.jsonl"
    first = b"a" * storage.min_part_bytes  # every part but the last must be 5 MiB in S3

    upload_id = asyncio.run(storage.start_parts(key, media_type="application/x-ndjson"))
    asyncio.run(storage.put_part(key, upload_id, 1, b"stale"))
    asyncio.run(storage.put_part(key, upload_id, 1, first))  # a retried part replaces the first
    asyncio.run(storage.put_part(key, upload_id, 2, b"tail\n"))
    asyncio.run(storage.finish_parts(key, upload_id, 2))
    asyncio.run(storage.finish_parts(key, upload_id, 2))  # a finisher that died and came back

    assert asyncio.run(storage.get(key)) == first + b"tail\n"
    stored = s3.head_object(Bucket=BUCKET, Key=f"unit/{key}")
    assert stored["ContentType"] == "application/x-ndjson"


def test_batch_results_are_written_to_s3(s3_stack, s3_api, s3, moto_url):
    items = [
        {"input": {"image": {"base64": base64.b64encode(image_bytes()).decode()}, "width": 30}}
        for _ in range(3)
    ]
    created = s3_api.post("/v1/batches", json={"type": "image.transform", "items": items})
    assert created.status_code == 202, created.text

    def ended() -> dict[str, Any] | None:
        batch = s3_api.get(f"/v1/batches/{created.json()['id']}").json()
        return None if batch["status"] == "running" else cast(dict[str, Any], batch)

    batch = wait_until(ended, 30, "the batch to end")

    assert batch["counts"]["succeeded"] == 3
    url = batch["results"]["url"]
    assert url.startswith(f"{moto_url}/{BUCKET}/pixhook/")
    lines = httpx.get(url).text.splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == [0, 1, 2]


# Issue 15 item 9: S3 going down while jobs run. The stack reaches moto through a proxy the
# tests cut and restore; the bucket itself stays.
OUTAGE_PREFIX = "outage"


@pytest.fixture(scope="module")
def s3_proxy(moto_url: str, s3: Any) -> Iterator[TcpProxy]:
    proxy = TcpProxy(int(moto_url.rsplit(":", 1)[1])).start()
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def outage_stack(
    tmp_path_factory: pytest.TempPathFactory, s3_proxy: TcpProxy, openai_standin: OpenAIStandIn
) -> Iterator[RunningStack]:
    yield from stack_on_s3(
        tmp_path_factory.mktemp("outage-stack"),
        s3_proxy.url("http"),
        OUTAGE_PREFIX,
        PIXHOOK_OPENAI_BASE_URL=openai_standin.base_url,
        PIXHOOK_OPENAI_API_KEY=API_KEY,
        # Short, so that a job outlasting the outage is quick to see.
        PIXHOOK_JOB_TIMEOUT="4s",
    )


@pytest.fixture
def outage_api(outage_stack: RunningStack, s3_proxy: TcpProxy) -> Iterator[httpx.Client]:
    with api_of(outage_stack) as client:
        yield client
    s3_proxy.restore()  # whatever the test left it at


def generate(api: httpx.Client, model: str) -> str:
    prompt = {"prompt": "a red shoe", "model": model, "width": 64, "height": 64, "seed": 7}
    response = api.post("/v1/jobs", json={"type": "image.generate", "input": prompt})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def failed_puts(api: httpx.Client) -> float:
    text = api.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pixhook_storage_errors_total" and sample.labels == {"operation": "put"}
    )


def test_a_storage_outage_answers_503_without_internal_endpoints_or_keys(
    outage_api, s3_proxy, moto_url
):
    """Issue 15 item 9: the 503 for an upload during an S3 outage quoted boto's error, with the
    internal S3 endpoint URL and the object key in it."""
    s3_proxy.cut()

    response = outage_api.post("/v1/jobs", json=transform_job())

    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "STORAGE_UNAVAILABLE"
    for internal in (s3_proxy.url("http"), str(s3_proxy.port), BUCKET, OUTAGE_PREFIX, "/input"):
        assert internal not in error["message"]


def test_a_generate_job_rides_out_a_storage_blip_and_pays_once(
    outage_api, s3_proxy, openai_standin
):
    """Issue 15 item 9: with S3 down, image.generate failed STORAGE_UNAVAILABLE at once and the
    paid-for image was thrown away; the write is tried again inside the job."""
    s3_proxy.cut()
    before = failed_puts(outage_api)

    job_id = generate(outage_api, "standin-blip")
    wait_until(lambda: failed_puts(outage_api) > before, 10, "a failed write")
    s3_proxy.restore()
    job = wait_for_status(outage_api, job_id)

    assert job["status"] == "succeeded", job["error"]
    assert openai_standin.paid_calls("standin-blip") == 1


def test_a_generate_job_failed_by_storage_is_not_paid_for_again(
    outage_api, outage_stack, s3_proxy, openai_standin
):
    """Issue 15 item 9: a job that outlasted the outage had its paid-for image thrown away, so
    submitting it again paid the provider a second time; and its error quoted boto, with the
    internal S3 endpoint and the object key."""
    s3_proxy.cut()
    failed = wait_for_status(outage_api, generate(outage_api, "standin-outage"))
    assert (failed["status"], failed["error"]["code"]) == ("failed", "STORAGE_UNAVAILABLE")

    s3_proxy.restore()
    again = wait_for_status(outage_api, generate(outage_api, "standin-outage"))

    assert again["status"] == "succeeded", again["error"]
    assert openai_standin.paid_calls("standin-outage") == 1
    for internal in (s3_proxy.url("http"), BUCKET, failed["id"]):
        assert internal not in failed["error"]["message"]


# Public mode (issue 18): outputs at permanent `<base>/<object key>` URLs a CMS can keep, cached
# for long; inputs and results stay private and presigned.
CDN_BASE = "https://cdn.example.com/assets"


def test_public_outputs_are_written_cacheable_and_linked_under_the_base(s3):
    storage = S3Storage(s3, BUCKET, "pub", ttl_s=600, public_base_url=CDN_BASE + "/")
    key = output_key(storage, job_file_key("cl_pub", "job_pub", 0, "thumb 1.webp"))

    asyncio.run(storage.put(key, b"webp"))

    assert key == "public/cl_pub/1970/01/01/job_pub/thumb 1.webp"
    stored = s3.head_object(Bucket=BUCKET, Key=f"pub/{key}")
    assert stored["CacheControl"] == DEFAULT_PUBLIC_CACHE_CONTROL
    assert storage.url(key, "image/webp") == f"{CDN_BASE}/pub/{key.replace(' ', '%20')}"


def test_inputs_stay_private_and_presigned_in_public_mode(s3):
    storage = S3Storage(s3, BUCKET, "pub", ttl_s=600, public_base_url=CDN_BASE)
    key = job_file_key("cl_pub", "job_pub", 0, "input")

    asyncio.run(storage.put(key, b"raw"))

    assert s3.head_object(Bucket=BUCKET, Key=f"pub/{key}")["CacheControl"] == "private, max-age=600"
    assert "X-Amz-Signature=" in storage.url(key, "application/octet-stream")


def test_the_public_cache_control_is_a_setting(s3):
    settings = Settings.from_env(
        {
            "PIXHOOK_STORAGE": f"s3://{BUCKET}/pub",
            "PIXHOOK_S3_PUBLIC_BASE_URL": CDN_BASE,
            "PIXHOOK_S3_PUBLIC_CACHE_CONTROL": "public, max-age=600",
        }
    )
    storage = S3Storage(
        s3,
        BUCKET,
        "pub",
        ttl_s=600,
        public_base_url=settings.storage.s3_public_base_url,
        public_cache_control=settings.storage.s3_public_cache_control,
    )
    key = output_key(storage, "cl_pub/2024/05/06/job_cc/default.png")

    asyncio.run(storage.put(key, b"png"))

    assert s3.head_object(Bucket=BUCKET, Key=f"pub/{key}")["CacheControl"] == "public, max-age=600"


def test_presigned_links_stay_the_default(s3):
    storage = S3Storage(s3, BUCKET, "pub", ttl_s=600)

    assert output_key(storage, "cl/a.png") == "cl/a.png"
    assert "X-Amz-Signature=" in storage.url("cl/a.png", "image/png")


@pytest.fixture(scope="module")
def cdn(moto_url: str, s3: Any) -> Iterator[CdnStandIn]:
    # What an operator grants: anonymous reads of the outputs' folder, and of nothing else.
    readable = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/site/public/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [readable]}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    standin = CdnStandIn(moto_url, BUCKET).start()
    yield standin
    standin.close()


@pytest.fixture(scope="module")
def public_stack(
    tmp_path_factory: pytest.TempPathFactory, moto_url: str, cdn: CdnStandIn
) -> Iterator[RunningStack]:
    yield from stack_on_s3(
        tmp_path_factory.mktemp("public-stack"),
        moto_url,
        "site",
        PIXHOOK_S3_PUBLIC_BASE_URL=cdn.base_url,
    )


def test_a_job_output_is_a_permanent_public_url_served_through_the_cdn(public_stack, cdn, s3):
    with api_of(public_stack) as api:
        response = api.post("/v1/jobs", json=transform_job(image_bytes((400, 300))))
        assert response.status_code == 202, response.text
        job = wait_for_status(api, response.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    [image] = job["output"]["images"]
    day = datetime.fromisoformat(job["created_at"]).strftime("%Y/%m/%d")
    key = f"site/public/{public_stack.client.client.id}/{day}/{job['id']}/default.png"
    assert image["url"] == f"{cdn.base_url}/{key}"
    served = httpx.get(image["url"])
    assert served.status_code == 200
    assert served.headers["cache-control"] == DEFAULT_PUBLIC_CACHE_CONTROL
    assert served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (100, 75)
    input_key = f"site/{public_stack.client.client.id}/{day}/{job['id']}/input"
    assert s3.head_object(Bucket=BUCKET, Key=input_key)["CacheControl"].startswith("private")
    assert httpx.get(f"{cdn.base_url}/{input_key}").status_code == 403


def test_batch_results_stay_presigned_in_public_mode(public_stack, moto_url):
    item = {"input": {"image": {"base64": base64.b64encode(image_bytes()).decode()}, "width": 30}}
    with api_of(public_stack) as api:
        created = api.post("/v1/batches", json={"type": "image.transform", "items": [item]})
        assert created.status_code == 202, created.text

        def ended() -> dict[str, Any] | None:
            batch = api.get(f"/v1/batches/{created.json()['id']}").json()
            return None if batch["status"] == "running" else cast(dict[str, Any], batch)

        batch = wait_until(ended, 30, "the batch to end")

    assert batch["results"]["url"].startswith(f"{moto_url}/{BUCKET}/site/")
    assert "X-Amz-Signature=" in batch["results"]["url"]
    [line] = httpx.get(batch["results"]["url"]).text.splitlines()
    [output] = json.loads(line)["output"]["images"]
    assert "/site/public/" in output["url"] and "X-Amz" not in output["url"]


def test_a_named_output_is_public_under_the_clients_folder(public_stack, cdn, s3):
    body = transform_job(reference="SKU 42/red", output_name="{reference}/{variant}.{ext}")
    with api_of(public_stack) as api:
        response = api.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job = wait_for_status(api, response.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    key = f"site/public/{public_stack.client.client.id}/named/SKU_42_red/default.png"
    assert job["output"]["images"][0]["url"] == f"{cdn.base_url}/{key}"
    assert s3.head_object(Bucket=BUCKET, Key=key)["CacheControl"] == DEFAULT_PUBLIC_CACHE_CONTROL
    assert httpx.get(f"{cdn.base_url}/{key}").status_code == 200
