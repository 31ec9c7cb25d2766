"""The console's routes, mounted at /console. Reads go through `queries`; every form posts with
the session's CSRF token; every change is one the API can make too."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.console.batches import batch_page, resume_batch
from service.console.dead_letters import dlq_act, dlq_page, dlq_purge
from service.console.pages import (
    deliveries_page,
    delivery_page,
    enable_endpoint,
    endpoints_page,
    job_page,
    jobs_page,
    overview_page,
    retry_delivery,
)
from service.console.providers import providers_page, reinstate_key
from service.console.signin import home, login, login_form, logout
from service.console.usage import usage_page
from service.console.web import HERE

routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/overview", overview_page, methods=["GET"]),
    Route("/jobs", jobs_page, methods=["GET"]),
    Route("/jobs/{job_id}", job_page, methods=["GET"]),
    Route("/batches/{batch_id}", batch_page, methods=["GET"]),
    Route("/batches/{batch_id}/resume", resume_batch, methods=["POST"]),
    Route("/usage", usage_page, methods=["GET"]),
    Route("/deliveries", deliveries_page, methods=["GET"]),
    Route("/deliveries/{delivery_id}", delivery_page, methods=["GET"]),
    Route("/deliveries/{delivery_id}/retry", retry_delivery, methods=["POST"]),
    Route("/dlq", dlq_page, methods=["GET"]),
    Route("/dlq", dlq_act, methods=["POST"]),
    Route("/dlq/purge", dlq_purge, methods=["POST"]),
    Route("/endpoints", endpoints_page, methods=["GET"]),
    Route("/endpoints/{client_id}/{endpoint_id}/enable", enable_endpoint, methods=["POST"]),
    Route("/providers", providers_page, methods=["GET"]),
    Route("/providers/{provider}/reinstate", reinstate_key, methods=["POST"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="console-static"),
]
console = Mount("/console", routes=routes)
