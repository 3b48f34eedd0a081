"""A process group's guard: ``python guard.py SHELL WORKER`` kills SHELL's group if WORKER dies first.

A Ray worker that is force-cancelled gets SIGKILL and runs no cleanup, and Ray kills its direct children
with it; what a child script started in its own session (``apptainer exec`` in a pilot block) would run
on until the block's job ends. The guard (started by ``metasched.worker.guard_group``) takes hold of both
processes (pidfds), detaches (so it is nobody's direct child), and waits: if the worker ends first, it
kills the script's whole process group; if the script's shell ends first, it leaves.

Run as a file, not a module: standard library only, no package import, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

SETTLE_S = 0.2  # a shell that ended with its worker (parent-death signal) ends a moment after it


def main(argv: list[str]) -> int:
    """Detach, wait for the worker or the shell to end; kill the shell's group if the worker ended."""
    shell, worker = int(argv[0]), int(argv[1])
    try:
        shell_fd = os.pidfd_open(shell)
    except ProcessLookupError:  # the script already ended
        return 0
    try:
        worker_fd = os.pidfd_open(worker)
    except ProcessLookupError:
        return _kill(shell)
    if os.fork():  # the caller waits for this half only
        os._exit(0)
    ready, _, _ = select.select([worker_fd, shell_fd], [], [])
    if worker_fd in ready or select.select([worker_fd], [], [], SETTLE_S)[0]:
        return _kill(shell)
    return 0


def _kill(group: int) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
