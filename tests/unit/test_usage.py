"""What the worker measures of an attempt (metasched.worker.usage) and how the job script's record of a
command's CPU time is read."""

from __future__ import annotations

import subprocess
import sys
import time

from metasched.attempt_records import parse_exit_status
from metasched.outcomes import LossReason, Lost, Succeeded, with_usage
from metasched.records import Usage
from metasched.worker.usage import MeasuredPopen, Meter, command_usage, resident_mb


def test_a_meter_tells_cpu_from_waiting_and_restarts_the_memory_peak() -> None:
    big = bytearray(200 * 2**20)
    for i in range(0, len(big), 4096):
        big[i] = 1
    del big
    meter = Meter()  # the 200 MB peak above is not this one's
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    time.sleep(0.3)
    used = meter.usage()
    assert 0.55 <= used.wall_s < 2
    assert 0.25 <= used.cpu_s < 0.5
    assert used.max_rss_mb is not None
    assert used.max_rss_mb < resident_mb() + 100


def test_a_commands_usage_is_its_own_process_tree() -> None:
    size = int(resident_mb()) + 150  # above the forked image of this process, however big it has grown
    script = (f"import time\nb = bytearray({size} * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
              "end = time.process_time() + 0.3\nwhile time.process_time() < end: pass")
    forked = resident_mb()  # as the worker does: read before it starts the command
    proc = MeasuredPopen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    proc.communicate(timeout=30)
    used = command_usage(proc, 1.0, forked_mb=forked)
    assert used is not None
    assert used.cpu_s >= 0.3
    assert used.max_rss_mb is not None
    assert used.max_rss_mb >= size
    forked = resident_mb()  # this process may have shrunk since: what `true` forked is what counts
    small = MeasuredPopen(["true"], text=True)
    small.wait(timeout=30)
    tiny = command_usage(small, 0.1, forked_mb=forked)
    assert tiny is not None
    assert tiny.max_rss_mb is None  # no larger than the forked worker: not the command's own peak


def test_the_job_scripts_times_become_cpu_seconds() -> None:
    status = parse_exit_status("0 100.0 103.5 1m2.500s 0m0.250s\n")
    assert status is not None
    assert status.elapsed_s == 3.5
    assert status.cpu_s == 62.75
    assert parse_exit_status("0 100.0 103.5 0m0,500s 0m0,250s").cpu_s == 0.75  # type: ignore[union-attr]
    assert parse_exit_status("137 100.0 101.0").cpu_s is None  # type: ignore[union-attr]  (CRIU wrapper)
    assert parse_exit_status("0 100.0") is None


def test_usage_goes_only_on_outcomes_that_carry_it_and_is_never_overwritten() -> None:
    first, second = Usage(wall_s=1, cpu_s=1, max_rss_mb=None), Usage(wall_s=2, cpu_s=2, max_rss_mb=3)
    done = with_usage(Succeeded(result=b""), first)
    assert isinstance(done, Succeeded)
    assert done.usage == first
    assert with_usage(done, second) == done
    lost = Lost(reason=LossReason.VANISHED, detail="")
    assert with_usage(lost, first) is lost
