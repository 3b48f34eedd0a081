"""Process helpers: killing process trees (crash tests), starting servers on loopback ports."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def kill_tree(pid: int) -> int:
    """SIGKILL a process and all its descendants (a driver and the Ray it started); return how many."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:  # it has exited on its own
        return 0
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=15)
    return len(procs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, *, timeout_s: float = 30) -> None:
    """Wait until `proc` listens on 127.0.0.1:`port`; raise with the tail of its log if it dies or is slow."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as conn:
            if conn.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{proc.args!r} did not start listening on port {port}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` every 0.5 s until it is true; fail the test after `timeout` s, saying `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def running_on_nodes(nodes: list[str], marker: str) -> list[str]:
    """The test sites' compute nodes (container names) where a process whose command line holds `marker`
    runs."""
    return [node for node in nodes
            if subprocess.run(["docker", "exec", node, "pgrep", "-f", marker], capture_output=True,
                              timeout=60, check=False).returncode == 0]
