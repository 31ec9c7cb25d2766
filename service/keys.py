"""Every Redis key the service uses (`{p}` is the prefix, `pixhook` unless a store is given
another); webhooks/keys.py lists the delivery engine's, under the same prefix.

    {p}:queue:jobs | {p}:queue:deliveries   arq queues (arq adds its own `arq:*` keys per job)
    {p}:job:<id>                        string a job record (JSON)
    {p}:job:<id>:deliveries             list   the deliveries of its events
    {p}:job:<id>:runner                 string the worker running it
    {p}:jobs:index[:<kind>:<value>]     zset   job ids, all and by client, type, status, batch
    {p}:jobs:index:reference:<client>:<reference>  zset  a client's jobs with that reference
    {p}:metrics:jobs                    hash   job counters for /metrics
    {p}:client:<id>                     hash   a client
    {p}:clients                         set    every client id
    {p}:apikey:<sha256>                 string the client an API key belongs to
    {p}:client:<id>:unfinished          zset   its jobs not yet ended: its in-flight quota
    {p}:client:<id>:rate                hash   its request rate bucket
    {p}:client:<id>:idempotency:<sha256> hash  a used `Idempotency-Key` and its response
    {p}:client:<id>:usage:<YYYY-MM-DD>  hash   its provider tokens, cost and jobs of a UTC day
    {p}:client:<id>:brand-lists         set    the names of its brand lists
    {p}:client:<id>:brand-list:<name>   hash   a brand list: brands (JSON), count, version, time
    {p}:batch:<id>[:<part>]             hash/… a batch and its parts (service/jobs/batch_store.py)
    {p}:batches:running[:<client>]      set    running batches, all and by client
    {p}:batches:index:<client>          zset   a client's batch ids by creation time
    {p}:batches:receiving               set    batches whose items a worker reads from a URL
    {p}:events:<job or batch id>        stream its live events (SSE)
    {p}:vision:<sha256>:<versions>:<model>:<prompt>  string a cached vision answer
    {p}:generated:<client>:<sha256>     hash   generated images kept for a repeated request
    {p}:flight:<sha256>                 string who computes a piece of work now (single flight)
    {p}:worker:<id>                     string a worker's heartbeat
    {p}:provider:<name>:<key id>:{<model>}:rate|tokens|factor|paused|window  a key's limits
                                               for a model (no key id: the single-key form)
    {p}:provider:<name>:slots           zset   provider calls in flight
    {p}:provider:<name>:keys-out        hash   keys out of rotation (by key id: why, since when)
    {p}:ping:<event id>                 hash   an endpoint test's reserved pace slot
    {p}:console:failed-logins:<address> string failed console sign-ins
    {p}:console:ended:<session>         string a console session signed out

A rename here is a migration: existing data is found by these exact strings.
"""

from __future__ import annotations

import hashlib

PREFIX = "pixhook"
JOB_QUEUE = f"{PREFIX}:queue:jobs"
DELIVERY_QUEUE = f"{PREFIX}:queue:deliveries"


class Keys:
    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.clients = f"{prefix}:clients"
        self.job_index = f"{prefix}:jobs:index"
        self.job_metrics = f"{prefix}:metrics:jobs"
        self.receiving_batches = f"{prefix}:batches:receiving"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_deliveries(self, job_id: str) -> str:
        return f"{self.job(job_id)}:deliveries"

    def job_runner(self, job_id: str) -> str:
        return f"{self.job(job_id)}:runner"

    def job_index_of(self, kind: str, value: str) -> str:
        return f"{self.job_index}:{kind}:{value}"

    def job_reference_index(self, client_id: str, reference: str) -> str:
        return self.job_index_of("reference", f"{client_id}:{reference}")

    def client(self, client_id: str) -> str:
        return f"{self.prefix}:client:{client_id}"

    def api_key(self, digest: str) -> str:
        return f"{self.prefix}:apikey:{digest}"

    def unfinished_jobs(self, client_id: str) -> str:
        return f"{self.client(client_id)}:unfinished"

    def client_rate(self, client_id: str) -> str:
        return f"{self.client(client_id)}:rate"

    def idempotency(self, client_id: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"{self.client(client_id)}:idempotency:{digest}"

    def client_usage(self, client_id: str, day: str) -> str:
        return f"{self.client(client_id)}:usage:{day}"

    def brand_lists(self, client_id: str) -> str:
        return f"{self.client(client_id)}:brand-lists"

    def brand_list(self, client_id: str, name: str) -> str:
        return f"{self.client(client_id)}:brand-list:{name}"

    def batch(self, batch_id: str, part: str = "") -> str:
        return f"{self.prefix}:batch:{batch_id}{':' + part if part else ''}"

    def running_batches(self, client_id: str = "") -> str:
        return f"{self.prefix}:batches:running{':' + client_id if client_id else ''}"

    def batch_index(self, client_id: str) -> str:
        return f"{self.prefix}:batches:index:{client_id}"

    def events(self, owner_id: str) -> str:
        return f"{self.prefix}:events:{owner_id}"

    def vision_answer(self, digest: str, versions: str, model: str, prompt_digest: str) -> str:
        """`prompt_digest`: of everything the model is asked besides the photo."""
        return f"{self.prefix}:vision:{digest}:{versions}:{model}:{prompt_digest}"

    def generated_images(self, client_id: str, request_digest: str) -> str:
        return f"{self.prefix}:generated:{client_id}:{request_digest}"

    def flight(self, work_key: str) -> str:
        """The lease on computing what `work_key` (e.g. a vision answer's key) will hold."""
        return f"{self.prefix}:flight:{hashlib.sha256(work_key.encode()).hexdigest()}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def provider_model(self, provider: str, model: str) -> str:
        # Braces: one Redis Cluster hash slot per model, as the scripts touch several of its keys.
        return f"{self.prefix}:provider:{provider}:{{{model}}}"

    def provider_slots(self, provider: str) -> str:
        return f"{self.prefix}:provider:{provider}:slots"

    def provider_keys_out(self, provider: str) -> str:
        return f"{self.prefix}:provider:{provider}:keys-out"

    def endpoint_test(self, event_id: str) -> str:
        return f"{self.prefix}:ping:{event_id}"

    def console_failed_logins(self, address: str) -> str:
        return f"{self.prefix}:console:failed-logins:{address}"

    def console_ended(self, session_id: str) -> str:
        return f"{self.prefix}:console:ended:{session_id}"


KEYS = Keys()
