"""What an attempt used, measured by the worker that runs it: wall time, CPU time and peak memory.

CPU time is user + system time: of the worker process while a Python task runs (its threads included)
plus every child process that ended meanwhile; of the command's own process tree for a command (from
``wait4``). Peak memory is the peak resident set size: of the worker process during a Python task (Linux
resets the peak through ``/proc/self/clear_refs`` when the task starts; elsewhere it is the process's
peak so far), of the command's process tree for a command (its largest process). Linux counts in a
command's peak the worker's own image at the moment it forked the command, so a peak no larger than that
is not the command's and is reported as unknown (None). Works the same at every site, whatever the
scheduler keeps; a site's own accounting (sacct, qacct) is not read.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import time

from metasched.records import Usage

_KB_PER_MB = 1024.0  # Linux reports ru_maxrss and VmHWM in KiB
# what the worker may allocate between reading its resident set and forking the command: a command's
# peak within this of the forked image is the image's (a 272.42 MB "peak" of `true` beside 272.40)
FORK_SLACK_MB = 8.0


class MeasuredPopen(subprocess.Popen[str]):
    """A Popen that keeps the ended child's resource use (``os.wait4``), not only its exit status."""

    rusage: resource.struct_rusage | None = None

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:
        try:
            pid, status, rusage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:  # reaped elsewhere: no usage to tell
            return self.pid, 0
        if pid == self.pid:
            self.rusage = rusage
        return pid, status


def _cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _cpu_so_far() -> float:
    """CPU time of this process and of every child process it has waited for."""
    return sum(_cpu_s(resource.getrusage(who)) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def _peak_reset() -> None:
    """Start a new peak of this process's resident set (Linux; elsewhere the peak so far stays)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def resident_mb() -> float:
    """This process's resident set now (VmRSS), or 0 where /proc does not tell."""
    return _status_mb("VmRSS:") or 0.0


def _status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / _KB_PER_MB
    return None


def _peak_mb() -> float:
    """This process's peak resident set since the last reset (VmHWM), else since it started."""
    peak = _status_mb("VmHWM:")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _KB_PER_MB


class Meter:
    """Measures one Python task in this process from its creation; `usage()` once the task has ended."""

    def __init__(self) -> None:
        _peak_reset()
        self._wall, self._cpu = time.monotonic(), _cpu_so_far()

    def usage(self) -> Usage:
        """Wall and CPU time since the start, and the memory peak."""
        wall, cpu = time.monotonic() - self._wall, _cpu_so_far() - self._cpu
        return Usage(wall_s=round(wall, 6), cpu_s=round(cpu, 6), max_rss_mb=round(_peak_mb(), 3))


def command_usage(proc: MeasuredPopen, wall_s: float, forked_mb: float) -> Usage | None:
    """What a finished command's process tree used (None if its usage could not be read).

    `forked_mb` is the worker's resident set when it started the command: a peak up to that size (and
    FORK_SLACK_MB more) is the forked image's, not the command's (unknown).
    """
    if proc.rusage is None:
        return None
    peak = proc.rusage.ru_maxrss / _KB_PER_MB
    return Usage(wall_s=round(wall_s, 6), cpu_s=round(_cpu_s(proc.rusage), 6),
                 max_rss_mb=round(peak, 3) if peak > forked_mb + FORK_SLACK_MB else None)
