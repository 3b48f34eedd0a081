"""A site kind that runs each attempt as ``python -m metasched.worker`` in a process of its own.

Written against metasched's public seam only (``metasched.sites``, ``metasched.attempt_dir``,
``metasched.outcomes``): its config class is the schema of campaign files, its preflight and its
test-matrix row are declared in ``KIND``, and metasched finds it through the entry point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from metasched.attempt_dir import AttemptDir
from metasched.attempt_records import AttemptInputs
from metasched.outcomes import Cancelled, LossReason, Lost
from metasched.records import AttemptId, SiteLoad, SiteName
from metasched.sites.base import AttemptUpdate, Submission
from metasched.sites.kind import Check, MatrixRow, SiteKind
from metasched.sites.schema import FORBID_EXTRA, AbsolutePath, PositiveInt, check_fields


@dataclass(frozen=True, slots=True)
class SubprocSite:
    """Attempts run as processes on this machine, in directories under `work_dir`."""

    __pydantic_config__ = FORBID_EXTRA
    kind: ClassVar[str] = "subproc"
    name: str
    _: KW_ONLY
    work_dir: AbsolutePath
    slots: PositiveInt = 2

    def __post_init__(self) -> None:
        check_fields(self)

    def local_paths(self) -> list[tuple[str, str, str]]:
        return [("work_dir", self.work_dir, "directory")]


class SubprocAgent:
    """One process per attempt; a poll looks at every process once."""

    def __init__(self, config: SubprocSite) -> None:
        self.config = config
        self._running: dict[AttemptId, tuple[subprocess.Popen[bytes], AttemptDir]] = {}
        self._cancelled: set[AttemptId] = set()

    @property
    def name(self) -> SiteName:
        return SiteName(self.config.name)

    def start(self) -> None:
        os.makedirs(self.config.work_dir, exist_ok=True)

    def submit(self, submissions: Sequence[Submission]) -> None:
        for sub in submissions:
            attempt = AttemptDir(os.path.join(self.config.work_dir, sub.attempt_id)).create()
            attempt.write_inputs(AttemptInputs(spec=sub.spec, function=sub.function,
                                               dependency_results=sub.dependency_results, data=sub.data))
            with open(attempt.job_stderr, "wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "metasched.worker", str(attempt.path)],
                                        stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            self._running[sub.attempt_id] = (proc, attempt)

    def poll(self) -> list[AttemptUpdate]:
        updates = []
        for attempt_id, (proc, attempt) in list(self._running.items()):
            if proc.poll() is None:
                continue
            del self._running[attempt_id]
            outcome = attempt.worker_outcome()
            if attempt_id in self._cancelled:
                outcome = Cancelled(detail="process killed")
            elif outcome is None:
                outcome = Lost(reason=LossReason.WORKER_DIED, detail=f"exit {proc.returncode}: "
                               f"{attempt.stderr_tail(500)}")
            updates.append(AttemptUpdate(attempt_id=attempt_id, outcome=outcome))
        return updates

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        for attempt_id in attempt_ids:
            if attempt_id in self._running:
                self._cancelled.add(attempt_id)
                os.killpg(self._running[attempt_id][0].pid, signal.SIGKILL)

    def load(self) -> SiteLoad:
        slots = self.config.slots
        return SiteLoad(site=self.name, total_cores=slots, max_cores_per_task=slots, max_memory_mb=None,
                        gpus=0, nodes=1, inflight=len(self._running), max_inflight=slots)

    def close(self) -> None:
        self.cancel(list(self._running))


def preflight(site: SubprocSite) -> Iterator[Check]:
    writable = os.access(site.work_dir, os.W_OK)
    yield Check(site=site.name, check="work_dir", passed=writable,
                detail=f"{site.work_dir} is {'' if writable else 'not '}writable",
                fix="" if writable else "make work_dir writable")


KIND = SiteKind(name="subproc", config=SubprocSite, agent=SubprocAgent, preflight=preflight,
                matrix_rows=(MatrixRow("subproc", "processes on this machine", "0.1", "-", None),))
