"""The SSRF guard: which destinations are refused, and that requests go to the checked address."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.raw_servers import SHUTDOWN_POLL_S
from webhooks import GuardRefused
from webhooks.guard import (
    DNS_FAILURE,
    FORBIDDEN_ADDRESS,
    INVALID_URL,
    SCHEME_NOT_ALLOWED,
    GuardedTransport,
    UrlPolicy,
)

LOOPBACK = UrlPolicy.parse("127.0.0.0/8")
NO_PRIVATE = UrlPolicy()
# Teredo: server 65.54.227.120, client 127.0.0.1 stored bit-inverted in the last 32 bits.
TEREDO_LOOPBACK = "2001:0:4136:e378:8000:63bf:80ff:fffe"


class FakeDns:
    """A resolver that gives fixed answers (or fails) and records what it was asked."""

    def __init__(self, *answers: str, error: OSError | None = None) -> None:
        self.answers = list(answers)
        self.error = error
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        return list(self.answers)


class Server:
    """A real HTTP(S) server on 127.0.0.1 recording the Host header and body of each POST."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,))
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((self.headers["host"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for receiver.example only (no IP address in it), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert)]
        + ["-subj", "/CN=receiver.example", "-addext", "subjectAltName=DNS:receiver.example"],
        check=True,
        capture_output=True,
    )
    return cert, key


def post(transport: GuardedTransport, url: str) -> int:
    async def run() -> int:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.post(url, content=b"payload")
            return response.status_code

    return asyncio.run(run())


def refusal(policy: UrlPolicy, url: str, resolver: FakeDns | None = None) -> GuardRefused:
    with pytest.raises(GuardRefused) as caught:
        asyncio.run(policy.resolve(url, resolver))
    return caught.value


def test_request_goes_to_the_checked_address_with_the_original_host_header(server):
    dns = FakeDns("127.0.0.1")
    transport = GuardedTransport(LOOPBACK, resolver=dns)

    status = post(transport, f"http://receiver.example:{server.port}/hook")

    assert status == 204
    assert server.received == [(f"receiver.example:{server.port}", b"payload")]
    assert dns.calls == [("receiver.example", server.port)]


def test_request_to_a_private_address_is_refused_before_connecting(server):
    transport = GuardedTransport(NO_PRIVATE, resolver=FakeDns("127.0.0.1"))

    with pytest.raises(GuardRefused) as caught:
        post(transport, f"http://receiver.example:{server.port}/hook")

    assert (caught.value.reason, caught.value.address) == (FORBIDDEN_ADDRESS, "127.0.0.1")
    assert server.received == []


def test_tls_certificate_is_verified_for_the_url_host_not_the_address(tls_files):
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = Server(tls=server_tls)
    try:
        trusting = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=str(cert)))
        transport = GuardedTransport(LOOPBACK, trusting, resolver=FakeDns("127.0.0.1"))

        status = post(transport, f"https://receiver.example:{server.port}/hook")
    finally:
        server.close()

    assert status == 204
    assert server.received == [(f"receiver.example:{server.port}", b"payload")]


def test_ip_literal_host_is_not_looked_up(server):
    dns = FakeDns()
    transport = GuardedTransport(LOOPBACK, resolver=dns)

    status = post(transport, f"http://127.0.0.1:{server.port}/hook")

    assert status == 204
    assert dns.calls == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "198.18.0.1",
        "192.0.2.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "2001:db8::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::7f00:1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::808:808",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::",
        TEREDO_LOOPBACK,
        "not-an-address",
    ],
)
def test_non_public_address_is_refused(address):
    assert not NO_PRIVATE.is_allowed_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_address_is_allowed(address):
    assert NO_PRIVATE.is_allowed_address(address)


def test_forbidden_answer_is_refused_naming_the_address():
    error = refusal(NO_PRIVATE, "https://metadata.example/", FakeDns("169.254.169.254"))

    assert (error.reason, error.address) == (FORBIDDEN_ADDRESS, "169.254.169.254")


def test_every_resolved_address_is_checked():
    error = refusal(NO_PRIVATE, "https://mixed.example/", FakeDns("8.8.8.8", "10.0.0.5"))

    assert (error.reason, error.address) == (FORBIDDEN_ADDRESS, "10.0.0.5")


def test_resolve_returns_the_first_checked_address():
    address = asyncio.run(NO_PRIVATE.resolve("https://a.example/", FakeDns("1.1.1.1", "8.8.8.8")))

    assert address == "1.1.1.1"


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://0x7f000001/", "http://127.1/"], ids=str
)
def test_numeric_host_forms_are_judged_by_what_they_resolve_to(url):
    error = refusal(NO_PRIVATE, url)

    assert (error.reason, error.address) == (FORBIDDEN_ADDRESS, "127.0.0.1")


def test_octal_host_is_refused_as_httpx_will_not_parse_it():
    error = refusal(NO_PRIVATE, "http://0177.0.0.1/")

    assert error.reason == INVALID_URL


@pytest.mark.parametrize("url", ["http://localhost/", "http://LOCALHOST./", "http://a.localhost/"])
def test_localhost_name_is_refused_without_dns(url):
    with pytest.raises(GuardRefused) as caught:
        NO_PRIVATE.check_url(url)

    assert caught.value.reason == FORBIDDEN_ADDRESS


def test_localhost_name_is_allowed_when_both_loopbacks_are_allow_listed():
    UrlPolicy.parse("127.0.0.0/8, ::1/128").check_url("http://localhost:8080/hook")


def test_ip_literal_is_judged_without_dns():
    with pytest.raises(GuardRefused) as caught:
        NO_PRIVATE.check_url("http://[::ffff:a9fe:a9fe]/latest/meta-data")

    assert (caught.value.reason, caught.value.address) == (FORBIDDEN_ADDRESS, "::ffff:a9fe:a9fe")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", SCHEME_NOT_ALLOWED),
        ("file:///etc/passwd", SCHEME_NOT_ALLOWED),
        ("//example.com/", SCHEME_NOT_ALLOWED),
        ("http://user:pw@example.com/", INVALID_URL),
        ("http:///nohost", INVALID_URL),
        ("http://[::1/", INVALID_URL),
    ],
)
def test_url_is_refused_with_its_reason(url, reason):
    with pytest.raises(GuardRefused) as caught:
        NO_PRIVATE.check_url(url)

    assert (caught.value.reason, caught.value.url) == (reason, url)


@pytest.mark.parametrize(
    "dns",
    [
        FakeDns(error=OSError("resolver unreachable")),
        FakeDns(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known")),
        FakeDns(),
    ],
    ids=["os-error", "gaierror", "no-answer"],
)
def test_failed_resolution_is_a_dns_failure(dns):
    error = refusal(NO_PRIVATE, "https://gone.example/", dns)

    assert (error.reason, error.address) == (DNS_FAILURE, None)


def test_allow_listed_private_address_is_allowed():
    assert UrlPolicy.parse("10.0.0.0/8").is_allowed_address("10.1.2.3")


def test_mapped_address_is_allowed_when_its_ipv4_address_is_allow_listed():
    assert LOOPBACK.is_allowed_address("::ffff:127.0.0.1")


def test_allow_listed_teredo_prefix_does_not_allow_the_loopback_it_embeds():
    assert not UrlPolicy.parse("2001::/32").is_allowed_address(TEREDO_LOOPBACK)


def test_parse_reads_a_comma_separated_list():
    policy = UrlPolicy.parse(" 10.0.0.0/8, ,::1/128,")

    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8", "::1/128"]
    assert UrlPolicy.parse("").allowed_networks == ()


def test_parse_names_a_bad_network():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        UrlPolicy.parse("127.0.0.0/8, 10.0.0.0/33")
