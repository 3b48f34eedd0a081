"""Process helpers for crash tests."""

from __future__ import annotations

import contextlib
import signal

import psutil


def kill_tree(pid: int) -> int:
    """SIGKILL a process and all its descendants (a driver and the Ray it started); return how many."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=15)
    return len(procs)
