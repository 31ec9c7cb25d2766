"""The benchmark's receiver: nginx answering 200, its access log the arrival clock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from bench.errors import BenchError
from service.cli.devstack import StackError, free_port, stop_process, wait_for

NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    log_format bench '$http_webhook_id $msec';
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /hook {{ access_log {dir}/arrivals.log bench; return 200; }}
    }}
}}
"""


class Nginx:
    """nginx on a free loopback port: 200 for every POST /hook, one log line per request."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "nginx"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.log = self.dir / "arrivals.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> Nginx:
        self.dir.mkdir(parents=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir, port=self.port))
        errors = self.dir / "error.log"
        command = [binary, "-p", str(self.dir), "-e", str(errors), "-c", str(conf)]
        self._process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _answers(self.url), "nginx", 10, self._process)
        except StackError as exc:
            raise BenchError(f"{exc}\n{tail(errors)}") from exc
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, content=b"{}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Arrivals:
    """nginx's access log, read as it grows: the first arrival (Unix seconds) per webhook-id."""

    def __init__(self, path: Path) -> None:
        # From the end of the log as it is now: earlier runs are not this one's arrivals.
        self._path, self._offset, self._partial = path, path.stat().st_size, b""
        self.at: dict[str, float] = {}

    def poll(self) -> list[str]:
        """The webhook ids seen for the first time since the last poll."""
        with self._path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        new = []
        for event_id, _, msec in (line.decode().partition(" ") for line in lines):
            if event_id not in self.at:  # a retry of a delivery counts once, when it first came
                self.at[event_id] = float(msec)
                new.append(event_id)
        return new


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"({path} was not written)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"last lines of {path}:\n" + ("\n".join(text) or "(empty)")
