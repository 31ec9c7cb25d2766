"""The connected pieces an API process or a worker works with."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from arq.connections import ArqRedis
from starlette.requests import Request

from service.clients.store import ClientStore
from service.config import Settings
from service.imaging.decode_budget import DecodeBudget
from service.jobs.batch_store import BatchStore
from service.jobs.model import JobEndListeners
from service.jobs.store import JobStore
from service.notify import SLACK_WORDING
from service.providers.openai import provider_http
from service.queue import connect
from service.storage import Storage, open_storage
from webhooks import (
    Circuits,
    DeadLetters,
    DeliveryMetrics,
    DeliveryStore,
    EndpointStore,
    Engine,
    EngineConfig,
    Sealer,
)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: ArqRedis
    storage: Storage
    jobs: JobStore
    batches: BatchStore
    clients: ClientStore
    engine: Engine
    deliveries: DeliveryStore
    endpoints: EndpointStore
    sealer: Sealer
    dead_letters: DeadLetters
    circuits: Circuits
    delivery_metrics: DeliveryMetrics
    provider_http: httpx.AsyncClient
    decode_budget: DecodeBudget
    # Filled at startup by the process that opens the runtime (service/app.py, service/worker.py).
    job_end: JobEndListeners = field(default_factory=JobEndListeners)

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        settings.require_secret_key()
        redis = await connect(settings.redis.url)
        storage = open_storage(
            settings.storage.location,
            settings.api.secret_key,
            settings.storage.file_url_ttl_s,
            settings.api.public_url,
            s3_endpoint_url=settings.storage.s3_endpoint_url,
            s3_region=settings.storage.s3_region,
            s3_public_base_url=settings.storage.s3_public_base_url,
            s3_public_cache_control=settings.storage.s3_public_cache_control,
        )
        clients = ClientStore(redis)
        engine = Engine(redis, engine_config(settings), clients.signing_secrets)
        return cls(
            settings=settings,
            redis=redis,
            storage=storage,
            jobs=JobStore(redis, retention_s=settings.jobs.retention_s),
            batches=BatchStore(redis, retention_s=settings.jobs.retention_s),
            clients=clients,
            engine=engine,
            deliveries=engine.deliveries,
            endpoints=engine.endpoints,
            sealer=engine.config.sealer,
            dead_letters=engine.dead_letters,
            circuits=engine.circuits,
            delivery_metrics=engine.metrics,
            provider_http=provider_http(),
            decode_budget=DecodeBudget(settings.jobs.decode_budget_bytes),
        )

    async def close(self) -> None:
        await self.provider_http.aclose()
        await self.redis.aclose()


def engine_config(settings: Settings) -> EngineConfig:
    """The delivery engine's part of the settings, with pixhook's Slack wording."""
    return EngineConfig(
        sealer=settings.sealer,
        slack_wording=SLACK_WORDING,
        delivery=settings.delivery_policy,
        url_policy=settings.deliveries.allow_private_networks,
        circuit=settings.circuit_policy,
        dlq=settings.dlq_policy,
        retention_s=int(settings.jobs.retention_s),
        endpoint_disable_after_s=settings.endpoints.disable_after_s,
    )


def runtime(request: Request) -> Runtime:
    """The runtime the app opened at startup, which the request works with."""
    rt: Runtime = request.app.state.runtime
    return rt
