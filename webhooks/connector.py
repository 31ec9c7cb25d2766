"""The HTTP session delivery workers share: pooled, no cookies, and every DNS answer checked."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from webhooks.errors import GuardRefused
from webhooks.guard import DNS_FAILURE, Resolver, UrlPolicy, system_resolver


class GuardedResolver(AbstractResolver):
    """Resolves once and refuses the name unless every address is allowed; aiohttp then
    connects to exactly these addresses, so nothing can change between check and connect."""

    def __init__(self, policy: UrlPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        url = f"http://{host}:{port}/"
        try:
            addresses = await self._resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise GuardRefused(DNS_FAILURE, url, f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise GuardRefused(DNS_FAILURE, url, f"{host} resolves to no address")
        for address in addresses:
            self._policy.check_address(url, address)
        return [_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        pass


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)


def open_session(
    policy: UrlPolicy,
    *,
    connect_timeout_s: float,
    max_connections: int,
    per_host: int,
    resolver: Resolver = system_resolver,
) -> aiohttp.ClientSession:
    """aiohttp rather than httpx: its pool costs a fraction of the CPU at high concurrency
    (see docs/delivery-engine.md for the measurements)."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=per_host,
        resolver=GuardedResolver(policy, resolver),
        ttl_dns_cache=10,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
