"""Every Redis key the delivery engine uses, under a prefix its user chooses (`{p}` below).

    {p}:delivery:<id>                       hash   a delivery
    {p}:delivery:<id>:attempts              list   its attempts, newest first
    {p}:deliveries:due                      zset   pending deliveries by when they are next due
    {p}:deliveries:owner:<owner>:<status>   zset   an owner's deliveries by status
    {p}:dlq                                 zset   dead deliveries by when they died
    {p}:dlq:owner:<owner>[:host:<host>]     zset   the same, by owner (and host)
    {p}:dlq:host:<host>                     zset   the same, by host
    {p}:dlq:redrivable:<host:port>          zset   dead ones that auto-redrive may re-send
    {p}:dlq:redrive:<host:port>             string a redrive in progress for that authority
    {p}:secrets-version                     int    bumped when any signing secret changes
    {p}:circuit:<host>                      hash   a host's circuit
    {p}:circuits:open                       zset   hosts whose circuit is open
    {p}:endpoints:<owner>                   hash   an owner's endpoints
    {p}:endpoint:<id>:health|samples        hash/list  an endpoint's recent outcomes
    {p}:pace:<sha256(url)[:32]>:free|last   string a paced URL's next free slot, its last send
    {p}:metrics:deliveries                  hash   attempt counters for /metrics
    {p}:history:<minute>                    hash   per-minute counts for the console

A rename here is a migration: existing data is found by these exact strings.
"""

from __future__ import annotations

import hashlib

DEFAULT_PREFIX = "pixhook"


class Keys:
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.due = f"{prefix}:deliveries:due"
        self.dlq = f"{prefix}:dlq"
        # Bumped by whoever changes an owner's signing secrets, in the same transaction: read
        # with every claim, it tells workers that secrets they keep in memory are stale.
        self.secrets_version = f"{prefix}:secrets-version"
        self.circuits_open = f"{prefix}:circuits:open"
        self.delivery_metrics = f"{prefix}:metrics:deliveries"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}:delivery:{delivery_id}"

    def attempts(self, delivery_id: str) -> str:
        return self.delivery(delivery_id) + ":attempts"

    def by_status(self, owner: str, status: str) -> str:
        return f"{self.prefix}:deliveries:owner:{owner}:{status}"

    def dlq_owner(self, owner: str, host: str | None = None) -> str:
        base = f"{self.prefix}:dlq:owner:{owner}"
        return base if host is None else f"{base}:host:{host}"

    def dlq_host(self, host: str) -> str:
        return f"{self.prefix}:dlq:host:{host}"

    def dlq_redrivable(self, authority: str) -> str:
        """Dead deliveries to `authority` (host:port) that auto-redrive may still re-send."""
        return f"{self.prefix}:dlq:redrivable:{authority}"

    def redrive_gate(self, authority: str) -> str:
        return f"{self.prefix}:dlq:redrive:{authority}"

    def circuit(self, host: str) -> str:
        return f"{self.prefix}:circuit:{host}"

    def endpoints(self, owner: str) -> str:
        return f"{self.prefix}:endpoints:{owner}"

    def endpoint_health(self, endpoint_id: str) -> list[str]:
        base = f"{self.prefix}:endpoint:{endpoint_id}"
        return [f"{base}:health", f"{base}:samples"]

    def pace(self, url: str) -> list[str]:
        # Hashed: a Slack webhook URL is itself a secret, and key names show up in tools.
        channel = f"{self.prefix}:pace:{hashlib.sha256(url.encode()).hexdigest()[:32]}"
        return [f"{channel}:free", f"{channel}:last"]

    def history(self, moment: float) -> str:
        """The hash of counts for the minute `moment` falls in."""
        return f"{self.prefix}:history:{int(moment // 60)}"
