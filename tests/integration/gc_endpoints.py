"""Offline Globus Compute endpoints (a real GlobusComputeEngine, no cloud) for integration tests."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.processes import free_port


@dataclass(frozen=True)
class OfflineEndpoint:
    address: str
    authkey_file: str
    run_dir: Path


@contextmanager
def offline_endpoint(directory: Path, *extra: str, ready_timeout_s: float = 120) -> Iterator[OfflineEndpoint]:
    """Start ``python -m site_agents.globus_compute.offline`` in `directory`; stop it afterwards."""
    pytest.importorskip("globus_compute_endpoint",
                        reason="the globus extra is not installed (make test installs it: pip install -e "
                               "'.[dev,globus]')")
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "authkey"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    port = free_port()
    log = directory / "endpoint.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "site_agents.globus_compute.offline",
                                 "--port", str(port), "--authkey-file", str(key),
                                 "--run-dir", str(directory / "run"), *extra],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while b"READY" not in log.read_bytes():
            assert proc.poll() is None, f"the offline endpoint exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the offline endpoint was not ready:\n{log.read_text()}"
            time.sleep(0.2)
        yield OfflineEndpoint(address=f"127.0.0.1:{port}", authkey_file=str(key), run_dir=directory / "run")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def endpoint_client(endpoint: OfflineEndpoint) -> Any:
    """The endpoint object itself, through its manager (status(), known(task_ids), ...)."""
    from site_agents.globus_compute.offline import connect

    return connect(endpoint.address, Path(endpoint.authkey_file).read_bytes().strip())
