"""A moto S3 server on loopback for the object-storage tests (one way to start it)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@contextlib.contextmanager
def running_moto_server() -> Iterator[tuple[subprocess.Popen, str]]:
    """Start ``moto_server`` on a free port; yield the process and its endpoint URL once it
    accepts connections; stop it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # the server's port: an event that certainly comes
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto server did not start")
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGCONT)  # a test may have stopped it
        server.terminate()
        server.wait(timeout=10)
