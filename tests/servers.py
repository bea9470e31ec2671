"""`attnkit serve` in a process of its own, for the tests that need a real server (signals, slow clients, pages)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, port: int, *flags: str, env: dict | None = None) -> subprocess.Popen:
    """`attnkit serve` in a process of its own, once it answers /health."""
    command = [sys.executable, "-m", "attnkit", "serve", str(model), "--port", str(port), *flags]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"the server did not start: {server.communicate()[1][-2000:]}")
