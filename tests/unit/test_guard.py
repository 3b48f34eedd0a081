"""The guard of a script's session (metasched/worker/guard.py), with real processes: a parent that starts a
script the way a pilot block's Ray task does, then is SIGKILLed (as Ray force-cancels a worker)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

PARENT = """
import subprocess, sys
from metasched.worker import die_with_parent, guard_group
script = f"sleep {sys.argv[1]} & sleep {sys.argv[1]}; wait"
proc = subprocess.Popen(["sh", "-c", script], start_new_session=True, preexec_fn=die_with_parent)
guard_group(proc)
print(proc.pid, flush=True)
proc.wait()
"""


def marked(marker: str) -> list[psutil.Process]:
    """The processes whose command line holds `marker`.

    Read once, here: one that has just exited and is not reaped yet (a zombie) has none and is not listed.
    """
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_killed_parent_takes_its_scripts_whole_session_along() -> None:
    marker = f"600.{time.monotonic_ns() % 10**6}"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, marker], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        parent.stdout.readline()
        assert wait_until(lambda: len([p for p in marked(marker) if p.name() == "sleep"]) == 2, 10)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not marked(marker), 10), [p.info["cmdline"] for p in marked(marker)]
    finally:
        for proc in marked(marker):
            proc.kill()


def test_the_guard_leaves_when_the_script_ends_first() -> None:
    # (seconds to spare: on a loaded machine the guard's Python takes a while to start)
    quick = PARENT.replace('f"sleep {sys.argv[1]} & sleep {sys.argv[1]}; wait"', '"sleep 4"')
    parent = subprocess.Popen([sys.executable, "-c", quick + "import time; time.sleep(20)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        shell = parent.stdout.readline().strip()

        def guarding() -> list[psutil.Process]:
            return [p for p in marked("guard.py") if p.info["cmdline"][-2:-1] == [shell]]

        assert wait_until(guarding, 3), "the guard runs while the script does"
        assert wait_until(lambda: not guarding(), 12), "the guard outlived the script it guarded"
        assert parent.poll() is None, "while the parent lives on"
    finally:
        parent.kill()
        parent.wait()
