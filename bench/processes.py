"""Watching a bench's processes: RSS sampled in a thread, the kernel's peak RSS, CPU time."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import psutil  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from service.cli.devstack import RunningStack


def watch(stack: RunningStack, names: Mapping[str, str]) -> dict[str, psutil.Process]:
    """The stack's processes by label; `names` maps each label to the stack's process name."""
    running = stack.processes.processes
    return {label: psutil.Process(running[name].pid) for label, name in names.items()}


class Sampler:
    """The RSS of each process: every `every_s` in a thread, and on demand."""

    def __init__(self, processes: Mapping[str, psutil.Process], every_s: float = 0.05) -> None:
        self._processes = processes
        self._every_s = every_s
        self._lock = threading.Lock()
        self._samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> tuple[float, dict[str, int]]:
        """Read every process's RSS now: (monotonic time, RSS by label)."""
        now = time.monotonic()
        rss = {name: int(p.memory_info().rss) for name, p in self._processes.items()}
        with self._lock:
            self._samples.append((now, rss))
        return now, rss

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.sample()
            except psutil.Error:
                return  # a process ended: the bench's own checks report it

    def peak(self, name: str, start: float, end: float) -> int:
        """The highest sample from `start` to `end` (monotonic), 0 if there is none."""
        with self._lock:
            return max((rss[name] for at, rss in self._samples if start <= at <= end), default=0)

    def at(self, name: str, moment: float) -> int:
        """The last sample taken at or before `moment`."""
        with self._lock:
            return next((rss[name] for at, rss in reversed(self._samples) if at <= moment), 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def high_water_mark(pid: int) -> int:
    """The kernel's peak RSS of the process since it started (VmHWM), in bytes; 0 if unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(process: psutil.Process) -> float:
    """The process's user + system CPU time so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def redis_process(port: int) -> psutil.Process | None:
    """The redis-server child of this process on `port` (it retitles itself with it), if any."""
    for child in psutil.Process().children():
        try:
            if f":{port}" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None
