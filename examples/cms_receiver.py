"""A CMS's pixhook webhook receiver: finished image jobs update product records in SQLite.

Run it, then point a pixhook endpoint at it:

    export CMS_WEBHOOK_SECRET=whsec_...   # comma-separated during a rotation: new,old
    export CMS_BEARER_TOKEN=...           # optional
    python examples/cms_receiver.py --port 9000 --db cms.sqlite3

    curl -X POST $PIXHOOK/v1/endpoints -H "Authorization: Bearer $PIXHOOK_KEY" \
      -H 'content-type: application/json' -d '{
      "url": "https://cms.example.com/webhooks/pixhook",
      "event_types": ["job.completed", "job.failed"],
      "headers": {"Authorization": "Bearer <CMS_BEARER_TOKEN>"}}'

and put the `whsec_...` secret the endpoint answers with in CMS_WEBHOOK_SECRET. Jobs name their
product in `metadata`: `{"metadata": {"sku": "SNEAKER-42"}}` (or `"product_id"`).

What a receiver must get right, and where this one does it:
- pixhook delivers at least once: `webhook-id` is recorded in the same transaction as the
  change it made, so a retry is answered `duplicate` and applies nothing.
- Order is not guaranteed: every record keeps the time of the event that wrote it, and an older
  event never overwrites a newer one (`outdated`).
- A verified body we do not understand is answered 200 `ignored`: a 4xx or 5xx would only make
  pixhook retry a body that will never change.

Image URLs are pixhook's signed links, which expire (PIXHOOK_FILE_URL_TTL): a real CMS copies
the files to its own storage, or asks `GET /v1/jobs/{id}` for fresh links.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from webhooks import DEFAULT_TOLERANCE_S, InvalidWebhook, secret_key, verify

WEBHOOK_PATH = "/webhooks/pixhook"
IMAGE_JOBS = ("image.transform", "image.generate")
# The metadata keys that name a product, the first present wins.
PRODUCT_KEYS = ("sku", "product_id")
# pixhook retries for about 28 hours and replays dead deliveries (same webhook-id) for up to
# PIXHOOK_DLQ_RETENTION, 30 days by default: forget an id only after that.
SEEN_RETENTION_S = 35 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_webhooks (webhook_id TEXT PRIMARY KEY, seen_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_webhooks_by_time ON seen_webhooks (seen_at);
CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, updated_at TEXT);
CREATE TABLE IF NOT EXISTS product_images (
    product_id TEXT NOT NULL, name TEXT NOT NULL, image TEXT NOT NULL, job_id TEXT NOT NULL,
    event_at TEXT NOT NULL, PRIMARY KEY (product_id, name));
CREATE TABLE IF NOT EXISTS product_attributes (
    product_id TEXT PRIMARY KEY, attributes TEXT NOT NULL, job_id TEXT NOT NULL,
    event_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS product_jobs (
    product_id TEXT NOT NULL, job_type TEXT NOT NULL, job_id TEXT NOT NULL, status TEXT NOT NULL,
    error TEXT, event_at TEXT NOT NULL, PRIMARY KEY (product_id, job_type));
"""
# Each upsert writes only when its event is at least as new as the row's: `event_at` is UTC in
# one fixed-width format, so comparing the strings compares the times.
_UPSERT_IMAGE = """
INSERT INTO product_images VALUES (:product_id, :name, :image, :job_id, :event_at)
ON CONFLICT DO UPDATE SET image = excluded.image, job_id = excluded.job_id,
    event_at = excluded.event_at
WHERE excluded.event_at >= product_images.event_at"""
_UPSERT_ATTRIBUTES = """
INSERT INTO product_attributes VALUES (:product_id, :attributes, :job_id, :event_at)
ON CONFLICT DO UPDATE SET attributes = excluded.attributes, job_id = excluded.job_id,
    event_at = excluded.event_at
WHERE excluded.event_at >= product_attributes.event_at"""
_UPSERT_JOB = """
INSERT INTO product_jobs VALUES (:product_id, :job_type, :job_id, :status, :error, :event_at)
ON CONFLICT DO UPDATE SET job_id = excluded.job_id, status = excluded.status,
    error = excluded.error, event_at = excluded.event_at
WHERE excluded.event_at >= product_jobs.event_at"""
_TOUCH_PRODUCT = """
UPDATE products SET updated_at = :event_at
WHERE product_id = :product_id AND (updated_at IS NULL OR updated_at < :event_at)"""


class _Ignored(Exception):
    """A verified event that does not change a product: unsubscribed, or not the shape we know."""


@dataclass(frozen=True)
class JobOutcome:
    """What one finished job means for one product."""

    product_id: str
    job_id: str
    job_type: str
    event_at: str  # `finished_at` in UTC, fixed width: comparing the strings compares the times
    error: dict[str, str] | None = None
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, Any] | None = None


def create_app(
    secrets: str | Sequence[str],
    db_path: str,
    *,
    bearer_token: str | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> Starlette:
    """The receiver; `secrets` holds every secret a signature may match (new and old)."""
    held = [secrets] if isinstance(secrets, str) else list(secrets)
    for secret in held:
        secret_key(secret)  # a mistyped secret fails here, not on every delivery

    async def receive_webhook(request: Request) -> JSONResponse:
        if bearer_token is not None and not _has_bearer(request, bearer_token):
            return JSONResponse({"error": "unauthorized"}, 401, {"www-authenticate": "Bearer"})
        try:
            event = verify(request.headers, await request.body(), held, tolerance_s=tolerance_s)
        except InvalidWebhook as exc:
            return JSONResponse({"error": exc.reason}, 400)
        if isinstance(event, dict) and event.get("type") == "ping":
            return JSONResponse({"status": "pong"})
        try:
            outcome: JobOutcome | None = job_outcome(event)
        except _Ignored:
            outcome = None
        webhook_id = request.headers["webhook-id"]
        status = await run_in_threadpool(record_webhook, db_path, webhook_id, outcome)
        return JSONResponse({"status": status})

    async def show_product(request: Request) -> JSONResponse:
        product = await run_in_threadpool(load_product, db_path, request.path_params["product_id"])
        if product is None:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(product)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(create_schema, db_path)
        yield

    routes = [
        Route(WEBHOOK_PATH, receive_webhook, methods=["POST"]),
        Route("/products/{product_id}", show_product, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _has_bearer(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def job_outcome(event: Any) -> JobOutcome | None:
    """The product change a verified event asks for; None for events a CMS does not act on."""
    event_type = _get(event, "type", str)
    if event_type not in ("job.completed", "job.failed"):
        return None
    _check_storable(event)
    job = _get(event, "data", dict)
    product_id = _product_id(_get(job, "metadata", dict))
    finished_at = job.get("finished_at") or _get(event, "timestamp", str)
    base = JobOutcome(product_id, _get(job, "id", str), _get(job, "type", str), _utc(finished_at))
    if event_type == "job.failed":
        error = _get(job, "error", dict)
        return replace(base, error={k: str(error.get(k, "")) for k in ("code", "message")})
    output = _get(job, "output", dict)
    if base.job_type in IMAGE_JOBS:
        return replace(base, images=_images(output))
    if base.job_type == "image.analyze":
        return replace(base, attributes=catalogue_attributes(output))
    return None


def _product_id(metadata: dict[str, Any]) -> str:
    """The product a job names: its `sku` (as pixhook's examples put it), else `product_id`."""
    key = next((k for k in PRODUCT_KEYS if k in metadata), PRODUCT_KEYS[-1])
    product_id: str = _get(metadata, key, str)
    if not product_id.strip():
        raise _Ignored(f"{key} is empty")
    return product_id


def _images(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    images = {}
    for image in _get(output, "images", list):
        name, url = _get(image, "name", str), _get(image, "url", str)
        images[name] = {"url": url} | {k: image.get(k) for k in ("media_type", "width", "height")}
    return images


def catalogue_attributes(output: dict[str, Any]) -> dict[str, Any]:
    """An analyze job's output as catalogue fields: the vision model's when it ran, else
    what the local analysis knows (colours as hex, a quality grade)."""
    analysis = _get(output, "analysis", dict)
    vision = _optional(output, "attributes", dict)
    colours = _optional(analysis, "dominant_colors", list)
    return {
        "category": vision.get("category"),
        "subcategory": vision.get("subcategory"),
        "brand": vision.get("brand_detected"),
        "description": vision.get("description"),
        "tags": vision.get("tags") or [],
        "colors": vision.get("dominant_colors") or [],
        "color_hexes": [c["hex"] for c in colours if isinstance(c, dict) and "hex" in c],
        "material": vision.get("primary_material"),
        "condition": vision.get("product_condition"),
        "image_quality": vision.get("image_quality"),
        "quality_grade": _optional(analysis, "quality", dict).get("grade"),
    }


def _get(container: Any, key: str, kind: type[Any]) -> Any:
    if not isinstance(container, dict) or not isinstance(container.get(key), kind):
        raise _Ignored(f"{key} is missing or not a {kind.__name__}")
    return container[key]


def _check_storable(event: Any) -> None:
    # Python's JSON parser accepts NaN and lone surrogates; neither can be stored or served back.
    try:
        json.dumps(event, allow_nan=False, ensure_ascii=False).encode()
    except ValueError as exc:  # UnicodeEncodeError is one
        raise _Ignored("not representable as strict UTF-8 JSON") from exc


def _optional(container: dict[str, Any], key: str, kind: type[Any]) -> Any:
    """An optional field, empty when absent; present with the wrong type is still ignored."""
    return kind() if container.get(key) is None else _get(container, key, kind)


def _utc(text: Any) -> str:
    """A sortable UTC time; a time without a zone cannot be ordered against others."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise _Ignored("time without a zone")
        utc = moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError) as exc:  # Overflow: year 1 at UTC+1
        raise _Ignored("not an ISO 8601 time in range") from exc
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def _transaction(db_path: str) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front: two deliveries of one id queue on the dedupe
    # insert instead of both reading "unseen".
    with closing(sqlite3.connect(db_path, timeout=10, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def create_schema(db_path: str) -> None:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        # WAL: product reads do not wait for webhook writes.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)


def record_webhook(db_path: str, webhook_id: str, outcome: JobOutcome | None) -> str:
    """Apply a webhook once: `applied`, `outdated` (newer data held), `ignored` or `duplicate`."""
    with _transaction(db_path) as conn:
        now = time.time()
        conn.execute("DELETE FROM seen_webhooks WHERE seen_at < ?", (now - SEEN_RETENTION_S,))
        seen = "INSERT OR IGNORE INTO seen_webhooks VALUES (?, ?)"
        if conn.execute(seen, (webhook_id, now)).rowcount == 0:
            return "duplicate"
        if outcome is None:
            return "ignored"
        return "applied" if _apply(conn, outcome) else "outdated"


def _apply(conn: sqlite3.Connection, outcome: JobOutcome) -> bool:
    """Writes what is newer than the product holds; whether anything was."""
    error = None if outcome.error is None else json.dumps(outcome.error)
    keys = asdict(outcome) | {"error": error}
    conn.execute("INSERT OR IGNORE INTO products VALUES (:product_id, NULL)", keys)
    status = "succeeded" if error is None else "failed"
    changed = conn.execute(_UPSERT_JOB, keys | {"status": status}).rowcount
    for name, image in outcome.images.items():
        row = keys | {"name": name, "image": json.dumps(image)}
        changed += conn.execute(_UPSERT_IMAGE, row).rowcount
    if outcome.attributes is not None:
        attributes = json.dumps(outcome.attributes)
        changed += conn.execute(_UPSERT_ATTRIBUTES, keys | {"attributes": attributes}).rowcount
    if changed:
        conn.execute(_TOUCH_PRODUCT, keys)
    return changed > 0


def load_product(db_path: str, product_id: str) -> dict[str, Any] | None:
    """The product as `GET /products/{id}` shows it, or None."""
    with closing(sqlite3.connect(db_path)) as conn:
        conn.row_factory = sqlite3.Row

        def rows(table: str) -> list[sqlite3.Row]:
            # `table` is one of ours, never the caller's: only the id is a parameter.
            query = f"SELECT * FROM {table} WHERE product_id = ?"
            return conn.execute(query, (product_id,)).fetchall()

        products = rows("products")
        if not products:
            return None
        attributes = rows("product_attributes")
        return {
            "product_id": product_id,
            "updated_at": products[0]["updated_at"],
            "images": {row["name"]: _stamped(row, "image") for row in rows("product_images")},
            "attributes": _stamped(attributes[0], "attributes") if attributes else None,
            "jobs": {row["job_type"]: _job(row) for row in rows("product_jobs")},
        }


def _stamped(row: sqlite3.Row, column: str) -> dict[str, Any]:
    """A stored JSON object with the job and event time that wrote it."""
    stored: dict[str, Any] = json.loads(row[column])
    return stored | {"job_id": row["job_id"], "event_at": row["event_at"]}


def _job(row: sqlite3.Row) -> dict[str, Any]:
    error = None if row["error"] is None else json.loads(row["error"])
    return {
        "job_id": row["job_id"],
        "status": row["status"],
        "error": error,
        "event_at": row["event_at"],
    }


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> None:
    parser = argparse.ArgumentParser(description="Receive pixhook webhooks into a product DB.")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--db", default="cms.sqlite3", help="SQLite file (created if missing)")
    args = parser.parse_args(argv)
    secrets = [s.strip() for s in environ.get("CMS_WEBHOOK_SECRET", "").split(",") if s.strip()]
    if not secrets:
        parser.error("set CMS_WEBHOOK_SECRET to the endpoint's whsec_... secret")
    app = create_app(secrets, args.db, bearer_token=environ.get("CMS_BEARER_TOKEN") or None)
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
