"""Refusing outgoing requests to loopback, private and other non-public addresses (SSRF).

A URL's host is resolved once, every address is checked, and the connection goes to the checked
address, so a DNS answer that changes between check and connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from webhooks.errors import GuardRefused, InvalidNetwork

# Stable reason codes on `GuardRefused`.
SCHEME_NOT_ALLOWED = "SCHEME_NOT_ALLOWED"
INVALID_URL = "INVALID_URL"
FORBIDDEN_ADDRESS = "FORBIDDEN_ADDRESS"
DNS_FAILURE = "DNS_FAILURE"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Given a host name and port, its IP addresses as strings."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Explicit, because `is_global` misses some of these on the Python versions we support.
_DENIED_V4 = _networks(
    "0.0.0.0/8",  # "this network", incl. unspecified
    "10.0.0.0/8",
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, incl. cloud metadata 169.254.169.254
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, incl. broadcast
)
_DENIED_V6 = _networks(
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",  # local-use NAT64: where it leads is the operator's network
    "100::/64",  # discard
    "2001::/23",  # IETF protocol assignments, incl. Teredo
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
    "5f00::/16",  # segment routing
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local
    "ff00::/8",  # multicast
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
# Addresses whose destination is the IPv4 address they embed: judged by that address.
_IPV4_CARRIERS = _networks("::ffff:0:0/96", "::/96", "64:ff9b::/96", "2002::/16")
_LAST_32_BITS = _networks("::/96", "64:ff9b::/96", "64:ff9b:1::/48")


@dataclass(frozen=True)
class UrlPolicy:
    """Which destinations are allowed; private ones only inside `allowed_networks`."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> UrlPolicy:
        """From a comma-separated CIDR list such as "127.0.0.0/8, ::1/128"; "" allows none."""
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        return cls(tuple(_parse_network(entry) for entry in entries))

    def is_allowed_address(self, address: str) -> bool:
        """Whether a connection to this IP address (and any IPv4 address it embeds) may be made."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return all(
            self._listed(part) or _is_public(part) for part in (ip, embedded) if part is not None
        )

    def check_address(self, url: str, address: str) -> None:
        """Raises GuardRefused(FORBIDDEN_ADDRESS) unless `address` is allowed."""
        if not self.is_allowed_address(address):
            raise GuardRefused(FORBIDDEN_ADDRESS, url, f"{address} is not allowed", address)

    def check_url(self, url: str) -> None:
        """What can be judged without DNS; for refusing a URL when it is submitted."""
        self._target(url)

    async def resolve(self, url: str, resolver: Resolver | None = None) -> str:
        """Checks `url`, resolves its host once, checks every address; returns the one to use."""
        host, port, literal = self._target(url)
        if literal is not None:
            return str(literal)
        addresses = await _lookup(url, host, port, resolver or system_resolver)
        for address in addresses:
            self.check_address(url, address)
        return str(ipaddress.ip_address(addresses[0]))

    def _target(self, url: str) -> tuple[str, int, IPAddress | None]:
        parsed = _parse_url(url)
        host = parsed.raw_host.decode("ascii")
        literal = _ip_literal(host)
        legacy = None if literal is not None else _numeric_ipv4(host)
        if legacy is not None:
            # 0x7f000001, 2130706433, 127.1: an address spelled as a name. Judge the address, and
            # refuse the spelling anyway: HTTP clients will not connect to it.
            self.check_address(url, legacy)
            raise GuardRefused(
                INVALID_URL, url, f"{host} is not written as an IP address ({legacy})"
            )
        if literal is not None:
            self.check_address(url, host)
        elif _is_localhost(host) and not self._allows_localhost():
            raise GuardRefused(FORBIDDEN_ADDRESS, url, f"{host} is not allowed")
        return host, parsed.port or _DEFAULT_PORTS[parsed.scheme], literal

    def _allows_localhost(self) -> bool:
        return self.is_allowed_address("127.0.0.1") and self.is_allowed_address("::1")

    def _listed(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.allowed_networks)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Wraps an inner transport; resolves and checks each request's host, then connects to that IP.

    GuardRefused propagates from `handle_async_request` as is. TLS verifies the URL's name, but the
    inner pool keys connections by IP: HTTPS hosts sharing an address can share a connection.
    """

    def __init__(
        self,
        policy: UrlPolicy,
        inner: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = await self._policy.resolve(str(request.url), self._resolver)
        if _ip_literal(request.url.raw_host.decode("ascii")) is None:
            request = _pinned(request, address)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for `host`, unique addresses in the order given."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as exc:
        raise InvalidNetwork(entry, str(exc)) from exc


def _parse_url(url: str) -> httpx.URL:
    # Parsed as httpx parses it, so the guard judges the host the client will connect to.
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise GuardRefused(INVALID_URL, url, str(exc)) from exc
    if parsed.scheme not in _DEFAULT_PORTS:
        raise GuardRefused(SCHEME_NOT_ALLOWED, url, f"scheme {parsed.scheme!r} is not allowed")
    if not parsed.raw_host:
        raise GuardRefused(INVALID_URL, url, "the URL has no host")
    if parsed.userinfo:
        raise GuardRefused(INVALID_URL, url, "credentials in the URL are not allowed")
    return parsed


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _numeric_ipv4(host: str) -> str | None:
    """The address a legacy numeric spelling (decimal, hex, octal, short) stands for."""
    if not host or host.strip("0123456789abcdefABCDEFxX.") or not host[0].isdigit():
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def _is_localhost(host: str) -> bool:
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


async def _lookup(url: str, host: str, port: int, resolver: Resolver) -> list[str]:
    try:
        addresses = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise GuardRefused(DNS_FAILURE, url, f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise GuardRefused(DNS_FAILURE, url, f"{host} resolved to no address")
    return addresses


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip.sixtofour is not None:
        return ip.sixtofour
    # :: and ::1 are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    if int(ip) > 1 and any(ip in network for network in _LAST_32_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_global and not any(ip in network for network in _DENIED_V4)
    if any(ip in network for network in _DENIED_V6):
        return False
    # The embedded IPv4 address is judged separately, by `is_allowed_address`.
    if any(ip in network for network in _IPV4_CARRIERS):
        return True
    return ip in _GLOBAL_UNICAST_V6 and ip.is_global


def _pinned(request: httpx.Request, address: str) -> httpx.Request:
    """`request` sent to `address`, with the Host header and TLS name of its original host."""
    original = request.url
    headers = request.headers.copy()
    headers.setdefault("Host", original.netloc.decode("ascii"))
    extensions = {**request.extensions, "sni_hostname": original.raw_host.decode("ascii")}
    return httpx.Request(
        request.method,
        original.copy_with(host=address),
        headers=headers,
        stream=request.stream,
        extensions=extensions,
    )
