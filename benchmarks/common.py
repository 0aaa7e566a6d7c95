"""Helpers for the benchmark scripts: run a command and sample its process tree's memory."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass
class Measured:
    seconds: float
    peak_rss_mib: float       # peak of the summed RSS of the process and all its children
    returncode: int


def run_measured(cmd: list[str], env: dict | None = None, interval: float = 0.05) -> Measured:
    """Run `cmd`, returning wall time and the peak summed RSS of its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
            peak = max(peak, total)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    stop.set()
    thread.join()
    return Measured(time.perf_counter() - t0, peak / 2**20, code)


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
            f"{mem:.0f} GiB RAM, Python {platform.python_version()}")
