"""A campaign joins an existing Ray cluster (started with `ray start`) through `address=`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.ray
SCRIPT = Path(__file__).parent / "scripts" / "join_cluster.py"
RAY = Path(sys.executable).parent / "ray"


@pytest.fixture
def ray_head() -> Iterator[str]:
    temp_dir = tempfile.mkdtemp(prefix="/tmp/msr")  # short: Ray puts Unix sockets in it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log = Path(temp_dir) / "ray-start.log"
    with log.open("w") as out:  # not a pipe: Ray's daemons inherit it and would keep it open
        started = subprocess.run(
            [str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
             '--resources={"site:local": 2}', "--include-dashboard=false", f"--temp-dir={temp_dir}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False,
        )
    assert started.returncode == 0, log.read_text()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # `ray stop` would stop every Ray on the machine; stop only this cluster's processes.
        mine = [p for p in psutil.process_iter(["cmdline"])
                if temp_dir in " ".join(p.info["cmdline"] or [])]
        for proc in mine:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(mine, timeout=15)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_campaign_runs_on_an_existing_cluster(ray_head: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), ray_head, str(tmp_path / "j.db")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TOTAL 45" in proc.stdout
    assert f"Connecting to existing Ray cluster at address: {ray_head}" in proc.stderr
