"""k8s/: every kustomization renders with `kubectl kustomize`, every rendered object is valid
against the Kubernetes JSON schemas (offline, strict), and the properties that keep pixhook
safe and its jobs intact hold in what would actually be applied."""

from __future__ import annotations

import base64
import re

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from service.config import Settings, declarations
from tests.support.kubernetes import K8S, ROOT, Doc, of_kind, pod_specs, render

KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/prod"]
# The newest schemas kubernetes-validate ships (constraints.txt pins which ones those are).
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Custom resources the schemas do not know; checked by hand below instead.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
PRIVATE_RANGES = {
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
}
PIXHOOK_DEPLOYMENTS = {"api", "worker-jobs", "worker-deliveries"}
MiB = 1 << 20


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(request.param)


@pytest.fixture(scope="module")
def dev() -> list[Doc]:
    return render("overlays/dev")


@pytest.fixture(scope="module")
def prod() -> list[Doc]:
    return render("overlays/prod")


def env_of(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    name, docs = rendered
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    assert {"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{where}: {exc.message}")


def test_the_three_roles_run_one_image_with_their_own_arguments(rendered):
    _, docs = rendered
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == PIXHOOK_DEPLOYMENTS
    args = {
        name: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, d in deployments.items()
    }
    assert args == {
        "api": ["api", "--host", "0.0.0.0", "--port", "8000"],
        "worker-jobs": ["worker", "--queue", "jobs"],
        "worker-deliveries": ["worker", "--queue", "deliveries"],
    }
    images = {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments.values()}
    assert len(images) == 1
    service = of_kind(docs, "Service")["api"]
    assert service["spec"]["selector"] == deployments["api"]["spec"]["selector"]["matchLabels"]


def test_every_container_is_locked_down_and_sized(rendered):
    name, docs = rendered
    for owner, spec in pod_specs(docs).items():
        pod_ctx = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, owner
        assert pod_ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, owner
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}: {owner}/{container['name']}"
            ctx = container.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (where, part)
            # a read-only root needs somewhere writable for Pillow, tempfile and local storage
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if owner in PIXHOOK_DEPLOYMENTS:
                assert {"/tmp", "/var/lib/pixhook/files"} <= mounts, where
    accounts = of_kind(docs, "ServiceAccount")
    assert accounts["pixhook"]["automountServiceAccountToken"] is False


def test_api_probes_and_graceful_shutdown(rendered):
    _, docs = rendered
    deployments = of_kind(docs, "Deployment")
    api = deployments["api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthcheck"
    config = next(iter(of_kind(docs, "ConfigMap").values()))["data"]
    job_timeout = int(config["PIXHOOK_JOB_TIMEOUT"])
    grace = int(config["PIXHOOK_SHUTDOWN_GRACE"])
    periods = {
        name: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for name, d in deployments.items()
    }
    assert job_timeout == 300
    assert periods["worker-jobs"] >= job_timeout + grace
    assert periods["worker-deliveries"] > grace
    assert periods["api"] > grace
    for name in ("worker-jobs", "worker-deliveries"):
        # no HTTP port to probe: see the comment in k8s/base/worker-*.yaml
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert "ports" not in container
        assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(container)


def test_autoscaling_and_disruption_budgets(rendered):
    _, docs = rendered
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["api"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for b in budgets.values()
    } == PIXHOOK_DEPLOYMENTS


def test_egress_reaches_the_internet_but_not_private_ranges(rendered):
    _, docs = rendered
    policy = of_kind(docs, "NetworkPolicy")["pixhook-egress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "pixhook"}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    blocks = [
        peer["ipBlock"]
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    internet = [b for b in blocks if b["cidr"] == "0.0.0.0/0"]
    assert len(internet) == 1 and set(internet[0]["except"]) == PRIVATE_RANGES
    # any other address block is one host (prod's Redis), on the Redis port only
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            if "ipBlock" in peer and peer["ipBlock"]["cidr"] != "0.0.0.0/0":
                assert peer["ipBlock"]["cidr"].endswith("/32")
                assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    dns = [
        rule
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}
    ]
    assert dns and {p["port"] for p in dns[0]["ports"]} == {53}


def test_the_config_map_holds_settings_pixhook_knows_and_accepts(rendered):
    _, docs = rendered
    (config,) = of_kind(docs, "ConfigMap").values()
    known = {declared.variable for _, declared in declarations()}
    settings = {k: v for k, v in config["data"].items() if k.startswith("PIXHOOK_")}
    assert set(settings) <= known, set(settings) - known
    environ = {**settings, "PIXHOOK_SECRET_KEY": "x" * 32}
    assert Settings.from_env(environ).jobs.timeout_s == 300


def test_every_pixhook_variable_the_manifests_name_is_a_setting():
    """Env entries, config maps, the example secret and the comments that explain limits name
    only variables pixhook reads: a misspelled one would leave its setting at the default."""
    known = {declared.variable for _, declared in declarations()}
    named = {
        name
        for path in K8S.rglob("*.*")
        for name in re.findall(r"PIXHOOK_[A-Z0-9_]+", path.read_text())
    }
    assert "PIXHOOK_SECRET_KEY" in named
    assert named <= known, named - known


def test_the_jobs_worker_memory_limit_follows_from_its_decode_budget(rendered):
    """Issue 15, item 20: four 49 MP PNGs took a jobs worker to 1,560 MiB, past its 1536Mi
    limit, which nothing in the settings accounted for. The config map states the decode budget,
    and the limit is docs/operations.md's sum: 128 MiB for the process, the budget, and twice
    the largest input of each job running at once (the download, and its copy in storage)."""
    _, docs = rendered
    (config,) = of_kind(docs, "ConfigMap").values()
    assert "PIXHOOK_DECODE_BUDGET_BYTES" in config["data"]
    settings = Settings.from_env({**config["data"], "PIXHOOK_SECRET_KEY": "x" * 32})
    inputs = settings.jobs.concurrency * 2 * settings.limits.max_image_bytes
    needed = 128 * MiB + settings.jobs.decode_budget_bytes + inputs
    (worker,) = pod_specs(docs)["worker-jobs"]["containers"]
    assert worker["resources"]["limits"]["memory"] == f"{-(-needed // MiB)}Mi"


def test_no_secret_carries_a_real_value(rendered):
    _, docs = rendered
    for secret in of_kind(docs, "Secret").values():
        values = [base64.b64decode(v).decode() for v in secret.get("data", {}).values()]
        values += list(secret.get("stringData", {}).values())
        for value in values:
            assert value == "" or "change-me" in value.lower(), secret["metadata"]["name"]


def test_the_secret_template_holds_placeholders_only():
    docs = [d for d in yaml.safe_load_all((K8S / "base" / "secret.example.yaml").read_text()) if d]
    assert {d["metadata"]["name"] for d in docs} == {"pixhook-secrets", "pixhook-redis"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        for value in doc["stringData"].values():
            assert "CHANGE-ME" in value
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]


def test_dev_runs_a_durable_redis_that_never_evicts(dev):
    redis = of_kind(dev, "StatefulSet")["redis"]
    assert redis["spec"]["replicas"] == 1
    args = " ".join(redis["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--appendonly yes" in args
    assert "--maxmemory-policy noeviction" in args
    templates = redis["spec"]["volumeClaimTemplates"]
    assert [t["metadata"]["name"] for t in templates] == ["data"]
    service = of_kind(dev, "Service")[redis["spec"]["serviceName"]]
    assert service["spec"]["ports"][0]["port"] == 6379
    config = next(iter(of_kind(dev, "ConfigMap").values()))["data"]
    assert config["PIXHOOK_REDIS_URL"] == "redis://redis:6379/0"
    assert config["PIXHOOK_STORAGE"].startswith("local:")
    for name, spec in pod_specs(dev).items():
        if name in PIXHOOK_DEPLOYMENTS:
            files = {v["name"]: v for v in spec["volumes"]}["files"]
            assert files == {
                "name": "files",
                "persistentVolumeClaim": {"claimName": "pixhook-files"},
            }
    assert "pixhook-files" in of_kind(dev, "PersistentVolumeClaim")


def test_prod_reads_redis_from_a_secret_and_stores_on_s3(prod):
    deployments = of_kind(prod, "Deployment")
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        url = env_of(container)["PIXHOOK_REDIS_URL"]
        assert url["valueFrom"]["secretKeyRef"] == {"name": "pixhook-redis", "key": "url"}, name
    config = next(iter(of_kind(prod, "ConfigMap").values()))["data"]
    assert "PIXHOOK_REDIS_URL" not in config
    assert config["PIXHOOK_STORAGE"].startswith("s3://")
    assert not of_kind(prod, "Secret"), "prod Secrets are created out of band"
    assert all(d["spec"]["replicas"] >= 3 for d in deployments.values())
    assert of_kind(prod, "HorizontalPodAutoscaler")["api"]["spec"]["minReplicas"] >= 3


def test_workers_scale_on_queue_depth_with_keda(prod):
    scaled = of_kind(prod, "ScaledObject")
    assert set(scaled) == {"worker-jobs", "worker-deliveries"}
    queries = {}
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        queries[name] = trigger["metadata"]["query"]
    assert queries == {
        "worker-jobs": "max(pixhook_jobs_queued)",
        "worker-deliveries": "max(pixhook_deliveries_due)",
    }
    # and exported by /metrics (service/ and webhooks/ name them as string literals)
    sources = "".join(
        path.read_text()
        for package in ("service", "webhooks")
        for path in (ROOT / package).rglob("*.py")
    )
    assert '"pixhook_jobs_queued"' in sources
    assert '"pixhook_deliveries_due"' in sources
