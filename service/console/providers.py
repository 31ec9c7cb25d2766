"""The providers page: each configured provider's keys (in rotation, or refused and since
when, with a button to put one back, which resumes batches paused for want of a key) and what
its models have used and cost. The operator's
only: keys and spending are the deployment's, not a client's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.batches.pausing import resume_batches_paused_for_keys
from service.console.session import ConsoleSession
from service.console.web import Refused, page, render
from service.jobs.metrics import JobMetrics
from service.providers.key_checks import configured_providers
from service.providers.key_pool import KeyPool
from service.runtime import runtime


@page
async def providers_page(request: Request, session: ConsoleSession) -> Response:
    _operator_only(session)
    rt = runtime(request)
    counters = await JobMetrics(rt.redis).snapshot()
    providers = [
        {
            "name": name,
            "keys": await KeyPool.of(rt.settings, rt.redis, name).states(),
            "models": _usage(counters, name),
        }
        for name in configured_providers(rt.settings)
    ]
    return render(request, session, "providers.html", {"providers": providers})


@page
async def reinstate_key(request: Request, session: ConsoleSession) -> Response:
    _operator_only(session)
    rt = runtime(request)
    name = request.path_params["provider"]
    if name not in configured_providers(rt.settings):
        raise Refused(404, "No such provider.")
    form = await request.form()
    hint = str(form.get("key") or "")
    if not await KeyPool.of(rt.settings, rt.redis, name).put_back(hint or None):
        raise Refused(404, "No such key.")
    await resume_batches_paused_for_keys(rt, name)
    return RedirectResponse("/console/providers", 303)


def _operator_only(session: ConsoleSession) -> None:
    if not session.operator:
        raise Refused(404, "No such page.")


def _usage(counters: dict[str, float], provider: str) -> list[dict[str, Any]]:
    """Tokens by kind and cost per model, from the counters /metrics reports."""
    models: dict[str, dict[str, Any]] = {}
    for field, value in counters.items():
        kind, *labels = field.split("|")
        if kind not in ("tokens", "cost") or labels[0] != provider:
            continue
        row = models.setdefault(labels[1], {"model": labels[1], "cost_usd": 0.0})
        if kind == "cost":
            row["cost_usd"] = value
        else:
            row[labels[2]] = int(value)
    return sorted(models.values(), key=lambda row: -row["cost_usd"])
