"""docker-compose.yml runs what k8s/ runs: the same roles with the same arguments, the same
settings, the same lock-down and shutdown grace, and a Redis that keeps its data and never
evicts. A change to one that is not made to the other fails here."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from service.config import Settings, declarations
from tests.support.kubernetes import ROOT, Doc, of_kind, pod_specs, render

PIXHOOK_ROLES = ("api", "worker-jobs", "worker-deliveries")
# Where the deployment is reached and where its Redis is: each file names its own.
PER_DEPLOYMENT = {"PIXHOOK_PUBLIC_URL", "PIXHOOK_REDIS_URL"}
INTERPOLATED = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):(?P<kind>[-?])(?P<text>.*)\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def dev() -> list[Doc]:
    return render("overlays/dev")


def services(compose: dict[str, Any]) -> dict[str, Doc]:
    found: dict[str, Doc] = compose["services"]
    return found


def container(docs: list[Doc], name: str) -> Doc:
    found: Doc = pod_specs(docs)[name]["containers"][0]
    return found


def config_map(docs: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = next(iter(of_kind(docs, "ConfigMap").values()))["data"]
    return data


def secret_keys() -> set[str]:
    """The keys the secret template asks for, commented-out optional ones included."""
    template = (ROOT / "k8s" / "base" / "secret.example.yaml").read_text().split("---")[0]
    return set(re.findall(r"^\s*#?\s*(PIXHOOK_[A-Z0-9_]+):", template, re.MULTILINE))


def test_every_role_runs_the_one_image_with_the_arguments_k8s_gives_it(compose, dev):
    assert set(PIXHOOK_ROLES) <= set(services(compose))
    images = {services(compose)[role]["image"] for role in PIXHOOK_ROLES}
    assert len(images) == 1
    for role in PIXHOOK_ROLES:
        assert services(compose)[role]["command"] == container(dev, role)["args"], role
        assert services(compose)[role]["build"] == "."


def test_the_settings_are_k8s_settings_and_secrets_come_from_outside(compose, dev):
    for role in PIXHOOK_ROLES:
        env = services(compose)[role]["environment"]
        fixed = {k: v for k, v in config_map(dev).items() if k not in PER_DEPLOYMENT}
        assert {k: env.get(k) for k in fixed} == fixed, role
        assert PER_DEPLOYMENT <= set(env), role
        # the base's ConfigMap and secret template, and nothing else
        assert set(env) == set(config_map(dev)) | secret_keys() | PER_DEPLOYMENT, role
        for key in secret_keys():
            assert INTERPOLATED.match(env[key]), f"{key} must come from .env, not the file"


def test_every_pixhook_variable_the_file_names_is_a_setting():
    """Comments included: a misspelled variable would leave its setting at the default."""
    known = {declared.variable for _, declared in declarations()}
    named = set(re.findall(r"PIXHOOK_[A-Z0-9_]+", (ROOT / "docker-compose.yml").read_text()))
    assert named <= known, named - known


def test_the_settings_start_pixhook_once_the_secrets_are_given(compose):
    given = {"PIXHOOK_SECRET_KEY": "s" * 32, "PIXHOOK_ENCRYPTION_KEYS": ""}
    env = {
        key: given.get(key, match["text"] if match["kind"] == "-" else "")
        if (match := INTERPOLATED.match(value))
        else value
        for key, value in services(compose)["api"]["environment"].items()
    }
    settings = Settings.from_env(env)
    assert settings.jobs.timeout_s == 300
    required = {
        key
        for key, value in services(compose)["api"]["environment"].items()
        if (match := INTERPOLATED.match(value)) and match["kind"] == "?"
    }
    assert required == {"PIXHOOK_SECRET_KEY", "PIXHOOK_ENCRYPTION_KEYS"}


def test_every_role_is_locked_down_as_in_k8s(compose, dev):
    for role in PIXHOOK_ROLES:
        service, spec = services(compose)[role], pod_specs(dev)[role]
        pod = spec["securityContext"]
        assert service["user"] == f"{pod['runAsUser']}:{pod['runAsGroup']}", role
        lockdown = container(dev, role)["securityContext"]
        assert service["read_only"] is lockdown["readOnlyRootFilesystem"] is True, role
        assert service["cap_drop"] == lockdown["capabilities"]["drop"], role
        assert "no-new-privileges:true" in service["security_opt"], role
        mounts = {m["name"]: m["mountPath"] for m in container(dev, role)["volumeMounts"]}
        assert service["tmpfs"] == [mounts["tmp"]], role
        assert service["volumes"] == [f"files:{mounts['files']}"], role


def test_every_role_gets_the_shutdown_grace_k8s_gives_it(compose, dev):
    for role in PIXHOOK_ROLES:
        grace = services(compose)[role]["stop_grace_period"]
        assert grace == f"{pod_specs(dev)[role]['terminationGracePeriodSeconds']}s", role


def test_redis_keeps_its_data_and_never_evicts_as_in_the_dev_overlay(compose, dev):
    redis, in_k8s = services(compose)["redis"], container(dev, "redis")
    assert redis["command"] == in_k8s["command"] + in_k8s["args"]
    assert redis["image"] == in_k8s["image"]
    assert redis["volumes"] == ["redis:/data"]
    for role in PIXHOOK_ROLES:
        depends = services(compose)[role]["depends_on"]["redis"]
        assert depends["condition"] == "service_healthy", role
