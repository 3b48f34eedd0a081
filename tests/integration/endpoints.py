"""A real ProxyStore endpoint (the `proxystore-endpoint` daemon) on 127.0.0.1, for endpoint-store tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.processes import free_port, wait_for_port


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
    port = free_port()
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
        wait_for_port(proc, port, log)
        yield endpoint.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
