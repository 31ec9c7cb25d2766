"""Misbehaving webhook receivers on 127.0.0.1, written on raw sockets so each can misbehave exactly.

Every server handles each connection in its own thread, records what reached it, and stops
every thread and closes every socket in `close()`, whatever its clients were doing.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

# How often blocked socket calls wake up to see whether the server is closing.
_TICK_S = 0.1
# How often a stdlib server's serve_forever looks for shutdown(): its default 0.5 s was paid at
# the teardown of every test with a receiver.
SHUTDOWN_POLL_S = 0.02
# No single request may take longer than this to arrive.
_READ_DEADLINE_S = 10.0


class ClientGone(Exception):
    """The client closed or reset the connection."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} Whatever"]
        headers = {"content-length": str(len(self.body)), "connection": "close", **self.headers}
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Request:
    head: bytes
    body: bytes
    arrived_at: float  # time.monotonic()

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")


class RawServer:
    """A TCP server on 127.0.0.1; subclasses say what to do with a connection in `handle`."""

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._handlers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.port = 0
        self.connections = 0
        self.requests: list[Request] = []

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(_TICK_S)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{self}-accept")
        self._acceptor.start()
        return self

    def url(self, path: str = "/hook", *, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(10)
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(10)
        if self._listener is not None:
            self._listener.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port})"

    @property
    def closing(self) -> bool:
        return self._stopping.is_set()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(_TICK_S)
            thread = threading.Thread(target=self._serve, args=(conn,), name=f"{self}-conn")
            with self._lock:
                self.connections += 1
                self._handlers.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except (ClientGone, OSError):
            pass  # the client went away, or the server is closing: nothing to answer
        finally:
            conn.close()

    # Building blocks for `handle`.

    def read_request(self, conn: socket.socket) -> Request:
        """One HTTP request (head and Content-Length body), recorded as it completes."""
        deadline = time.monotonic() + _READ_DEADLINE_S
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self._recv(conn, deadline)
        head, _, body = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            body += self._recv(conn, deadline)
        request = Request(head, body, time.monotonic())
        with self._lock:
            self.requests.append(request)
        return request

    def send(self, conn: socket.socket, data: bytes) -> None:
        """All of `data`, unless the client leaves (ClientGone) or the server closes."""
        view = memoryview(data)
        while view:
            if self._stopping.is_set():
                raise ClientGone("the server is closing")
            try:
                sent = conn.send(view)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ClientGone(str(exc)) from exc
            view = view[sent:]

    def wait_for_client_to_leave(self, conn: socket.socket, seconds: float) -> bool:
        """Waits up to `seconds`; whether the client closed the connection meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stopping.is_set():
            conn.settimeout(min(left, _TICK_S))
            try:
                if not conn.recv(65536):
                    return True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
            finally:
                conn.settimeout(_TICK_S)
        return False

    def _recv(self, conn: socket.socket, deadline: float) -> bytes:
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                raise ClientGone("the server is closing")
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError as exc:
                raise ClientGone(str(exc)) from exc
            if not chunk:
                raise ClientGone("the client closed the connection")
            return chunk
        raise ClientGone("the request did not arrive in time")


class Scripted(RawServer):
    """Answers request n (0-based) with `respond(n)`."""

    def __init__(self, respond: Callable[[int], Response] = lambda n: Response(200)) -> None:
        super().__init__()
        self._respond = respond

    def handle(self, conn: socket.socket) -> None:
        self.read_request(conn)
        with self._lock:
            number = len(self.requests) - 1
        self.send(conn, self._respond(number).encode())


class Trickler(RawServer):
    """For its first `trickle` requests: a 200 head promising a large body, then one byte every
    `interval_s` until the client gives up. Later requests get a prompt 200."""

    def __init__(self, trickle: int = 1, interval_s: float = 0.5) -> None:
        super().__init__()
        self._trickle = trickle
        self._interval_s = interval_s
        self.holding = threading.Event()  # a client is being trickled to
        self.released = threading.Event()  # that client has left
        self.bytes_trickled = 0

    def handle(self, conn: socket.socket) -> None:
        self.read_request(conn)
        with self._lock:
            number = len(self.requests) - 1
        if number >= self._trickle:
            self.send(conn, Response(200).encode())
            return
        self.send(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n")
        self.holding.set()
        try:
            while not self.closing:
                if self.wait_for_client_to_leave(conn, self._interval_s):
                    return
                self.send(conn, b".")
                self.bytes_trickled += 1
        finally:
            self.released.set()


class HugeBody(RawServer):
    """Answers `status` with a `size`-byte body, streamed in chunks, never built in memory."""

    CHUNK = b"A" * 65536

    def __init__(self, status: int, size: int = 50_000_000) -> None:
        super().__init__()
        self._status = status
        self._size = size
        self.bytes_sent: list[int] = []  # body bytes written, per request answered

    def handle(self, conn: socket.socket) -> None:
        self.read_request(conn)
        head = f"HTTP/1.1 {self._status} Big\r\ncontent-length: {self._size}\r\n\r\n"
        self.send(conn, head.encode())
        sent = 0
        try:
            while sent < self._size:
                chunk = self.CHUNK[: self._size - sent]
                self.send(conn, chunk)
                sent += len(chunk)
        finally:
            with self._lock:
                self.bytes_sent.append(sent)


class Resetter(RawServer):
    """Reads the request, then closes with SO_LINGER 0: the client gets a RST, not an answer."""

    def handle(self, conn: socket.socket) -> None:
        self.read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class TlsServer(RawServer):
    """HTTPS with the given context; records handshakes that failed and requests that got in."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context
        self.handshake_errors: list[str] = []

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)  # the handshake is one blocking call: let it run to its end
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self._lock:
                self.handshake_errors.append(str(exc))
            return
        with tls:
            tls.settimeout(_TICK_S)
            self.read_request(tls)
            self.send(tls, Response(200).encode())
