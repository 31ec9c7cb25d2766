"""A dependency that dies and comes back: a TCP proxy on a loopback port, in front of Redis or S3.

`cut()` drops every connection and refuses new ones, as a dead server does, until `restore()`
listens on the same port again. `cut_at` arms a cut on a request seen passing through, so that it
lands mid-request: after the server has answered it, or instead of sending it on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

_TICK_S = 0.1


@dataclass
class _Trigger:
    marker: bytes
    occurrence: int  # the nth request holding `marker` (counted from when it was armed)
    answered: bool  # cut once the server has answered it; else cut instead of sending it


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._trigger: _Trigger | None = None
        self._seen = 0
        self._closing = threading.Event()
        self.port = 0

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> Self:
        self._listen()
        return self

    def cut_at(self, marker: bytes, occurrence: int = 1, *, answered: bool) -> None:
        with self._lock:
            self._trigger, self._seen = _Trigger(marker, occurrence, answered), 0

    def cut(self) -> None:
        with self._lock:
            self._trigger = None
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, []
        for sock in [s for s in (listener, *doomed) if s is not None]:
            _close(sock)

    def restore(self) -> None:
        """The server is back (and any cut still armed is called off); harmless when it is."""
        with self._lock:
            self._trigger = None
            listening = self._listener is not None
        if not listening:
            self._listen()

    def close(self) -> None:
        self._closing.set()
        self.cut()
        for thread in self._threads:
            thread.join(5)

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(_TICK_S)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._spawn(self._accept, listener)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            state = {"armed": False}
            self._spawn(self._requests, client, upstream, state)
            self._spawn(self._replies, upstream, client, state)

    def _requests(
        self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]
    ) -> None:
        while data := _recv(client):
            with self._lock:
                trigger = self._trigger
                if trigger is not None and trigger.marker in data:
                    self._seen += 1
                    hit = self._seen == trigger.occurrence
                else:
                    hit = False
            if hit and trigger is not None and not trigger.answered:
                self.cut()
                return
            state["armed"] = hit
            try:
                upstream.sendall(data)
            except OSError:
                return
        _close(upstream)

    def _replies(
        self, upstream: socket.socket, client: socket.socket, state: dict[str, bool]
    ) -> None:
        while data := _recv(upstream):
            try:
                client.sendall(data)
            except OSError:
                return
            if state["armed"]:
                self.cut()
                return
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
