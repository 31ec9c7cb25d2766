"""`/metrics`: Prometheus text, the same from every API replica (the figures live in Redis)."""

from __future__ import annotations

from collections.abc import Iterator

from arq.constants import in_progress_key_prefix
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.operations import Operation, Reply, documented
from service.jobs.metrics import JobGauges, JobMetrics, job_metric_families, oldest_queued_age_s
from service.keys import JOB_QUEUE
from service.providers.key_checks import configured_providers
from service.providers.key_pool import KeyPool
from service.runtime import Runtime, runtime
from webhooks import DeliveryGauges, delivery_metric_families


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


@documented(
    Operation(
        "Prometheus metrics",
        (Reply(200, "text exposition format", {"text/plain": {"type": "string"}}),),
        authenticated=False,
        errors={503: ("SERVICE_UNAVAILABLE",)},
    )
)
async def metrics(request: Request) -> Response:
    rt = runtime(request)
    due, pending = await rt.deliveries.due_count()
    gauges = DeliveryGauges(
        due=due,
        pending=pending,
        dead=await rt.dead_letters.size(),
        open_circuits=await rt.circuits.open_count(),
    )
    families = list(delivery_metric_families(await rt.delivery_metrics.snapshot(), gauges))
    job_gauges = JobGauges(
        # The jobs' own statuses, not arq's queue, which also holds the worker's cron entries.
        queued=await rt.jobs.index.count(("queued", "running")),
        oldest_queued_age_s=await oldest_queued_age_s(rt.redis, JOB_QUEUE, in_progress_key_prefix),
        batches_running=len(await rt.batches.running()),
    )
    families += job_metric_families(await JobMetrics(rt.redis).snapshot(), job_gauges)
    families.append(await _provider_keys(rt))
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


async def _provider_keys(rt: Runtime) -> Metric:
    """Each configured provider's keys, in rotation and out of it: an alert's first sign that a
    key was revoked, before no key is left."""
    family = GaugeMetricFamily(
        "pixhook_provider_keys",
        "API keys of each provider, in rotation or refused (out)",
        labels=["provider", "state"],
    )
    for name in configured_providers(rt.settings):
        states = await KeyPool.of(rt.settings, rt.redis, name).states()
        in_rotation = sum(state.in_rotation for state in states)
        family.add_metric([name, "in_rotation"], in_rotation)
        family.add_metric([name, "out"], len(states) - in_rotation)
    return family


routes = [Route("/metrics", metrics, methods=["GET"])]
