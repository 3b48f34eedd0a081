"""A real ProxyStore endpoint (the `proxystore-endpoint` daemon) on 127.0.0.1, for endpoint-store tests."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_endpoint(home: Path, name: str = "ep") -> Iterator[str]:
    """Configure and start an endpoint whose configuration lives in `home`; yields its UUID.

    No relay server (peering is not used: metasched moves data between stores itself), objects up to
    1 GB, listening on 127.0.0.1 only.
    """
    binary = shutil.which("proxystore-endpoint", path=os.path.dirname(sys.executable))
    if binary is None:
        pytest.skip("proxystore-endpoint not installed (the dev extra installs proxystore[endpoints])")
    env = {**os.environ, "PROXYSTORE_HOME": str(home)}
    port = _free_port()
    subprocess.run([binary, "configure", name, "--host", "127.0.0.1", "--port", str(port),
                    "--no-relay-server"], env=env, check=True, capture_output=True, timeout=60)
    config = home / name / "config.toml"
    text = re.sub(r"max_object_size = \d+", "max_object_size = 1000000000", config.read_text())
    config.write_text(text)
    endpoint = re.search(r'uuid = "([0-9a-f-]+)"', text)
    assert endpoint is not None, text
    log = home / name / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "start", name, "--no-detach"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxystore-endpoint did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield endpoint.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
