"""The cooperative task the checkpoint tests share (metasched pickles it by value: nodes need no tests)."""

from __future__ import annotations

import os
import time

import metasched as ms


def accumulate(steps: int, pause: float, ckpt: ms.Checkpoint) -> tuple[int, int, list[int], str]:
    """Sum of squares below `steps`, `pause` s a step, a save every 10 steps.

    Returns the sum, the steps done, the step each attempt began at, and the batch job of the last one.
    """
    state = ckpt.load({"i": 0, "total": 0, "began": []})
    state["began"] = [*state["began"], state["i"]]
    for i in range(state["i"], steps):
        state["total"] += i * i
        state["i"] = i + 1
        time.sleep(pause)
        if state["i"] % 10 == 0:
            ckpt.save(state)
    return state["total"], state["i"], state["began"], os.environ.get("SLURM_JOB_ID", "")
