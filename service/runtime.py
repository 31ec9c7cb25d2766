"""The connected pieces an API process or a worker works with."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from arq.connections import ArqRedis

from service.batches.store import BatchStore
from service.clients import ClientStore
from service.config import Settings
from service.decode_budget import DecodeBudget
from service.jobs import JobStore
from service.providers.openai import provider_http
from service.queue import connect
from service.storage import Storage, open_storage
from webhooks.circuit import Circuits
from webhooks.dlq import DeadLetters
from webhooks.endpoints import EndpointStore
from webhooks.metrics import DeliveryMetrics
from webhooks.sealing import Sealer
from webhooks.store import DeliveryStore


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: ArqRedis
    storage: Storage
    jobs: JobStore
    batches: BatchStore
    clients: ClientStore
    deliveries: DeliveryStore
    endpoints: EndpointStore
    sealer: Sealer
    dead_letters: DeadLetters
    circuits: Circuits
    delivery_metrics: DeliveryMetrics
    provider_http: httpx.AsyncClient
    decode_budget: DecodeBudget

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        settings.require_secret_key()
        redis = await connect(settings.redis_url)
        storage = open_storage(
            settings.storage,
            settings.secret_key,
            settings.file_url_ttl_s,
            settings.public_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
        )
        deliveries = DeliveryStore(redis, retention_s=int(settings.job_retention_s))
        sealer = settings.sealer
        return cls(
            settings=settings,
            redis=redis,
            storage=storage,
            jobs=JobStore(redis, retention_s=settings.job_retention_s),
            batches=BatchStore(redis, retention_s=settings.job_retention_s),
            clients=ClientStore(redis),
            deliveries=deliveries,
            endpoints=EndpointStore(redis, sealer),
            sealer=sealer,
            dead_letters=DeadLetters(deliveries, settings.dlq_policy),
            circuits=Circuits(redis, settings.circuit_policy),
            delivery_metrics=DeliveryMetrics(redis),
            provider_http=provider_http(),
            decode_budget=DecodeBudget(settings.decode_budget_bytes),
        )

    async def close(self) -> None:
        await self.provider_http.aclose()
        await self.redis.aclose()
