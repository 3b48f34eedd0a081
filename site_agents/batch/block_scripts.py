"""Container and CRIU attempts in pilot blocks: batch mode's job script, started by a Ray task in the block.

In batch mode a container attempt (``container=Image(sif=...)``) is a job script its launcher writes:
check the SIF and the image's Python on the node, then ``apptainer exec``; a ``checkpoint="criu"``
command is a job script that runs the CRIU wrapper. In a pilot block the same script runs as the child
of a Ray task on one of the block's nodes instead of as a job of its own: the launcher, the script, its
records and the reading of them are batch mode's; only who starts the script differs. The Ray task reads
the outcome on the node, where the attempt directory is the site's own (also at a site over SSH), and
returns it.

No scheduler warns or signals a script in a block, so a CRIU attempt's wrapper is told when the block
ends (``leave_by``: it checkpoints then and the task goes on in its next attempt), a migration asks it
through a request file in the attempt directory, and its restart points are read here, every
``PROGRESS_EVERY_S``.

The script runs in its own session, with the Ray worker as its parent: a force-cancelled attempt's shell
is killed with the worker, and a guard (``metasched.worker.guard``) kills the rest of its session
(``apptainer exec``); a CRIU task, in a session of its own, dies with its wrapper.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metasched.attempt_dir import AttemptDir
from metasched.data.objects import DataContext
from metasched.data.stores import StoreSpec
from metasched.errors import SiteAgentError
from metasched.outcomes import TaskOutcome, failed
from metasched.records import AttemptId, Capability, CheckpointKind, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from metasched.worker import die_with_parent, guard_group, kill_group
from site_agents.batch.agent import BatchAgent
from site_agents.batch.jobs import BatchJob, Launcher
from site_agents.batch.launchers import CriuLauncher, LaunchRefused, refused
from site_agents.batch.submitting import job_store
from site_agents.ray_tasks import RayTasks

PROGRESS_EVERY_S = 2.0  # how often the restart points of CRIU attempts in blocks are read


def scripted(spec: TaskSpec) -> bool:
    """Whether an attempt runs its batch job script in a block (a container or a CRIU attempt)."""
    return spec.container is not None or spec.checkpoint is CheckpointKind.CRIU


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptRun:
    """What the Ray task on the node needs: the attempt's directory and how to read its outcome."""

    attempt_dir: str  # as the site's nodes see it
    spec: TaskSpec
    launcher: Launcher
    store: StoreSpec
    data: DataContext | None

    def job(self, attempt: AttemptDir) -> BatchJob:
        """The attempt as its launcher reads it (in the block's job)."""
        return BatchJob(attempt_id=AttemptId(attempt.attempt_id), spec=self.spec,
                        job_id=os.environ.get("SLURM_JOB_ID", ""), attempt=attempt, launcher=self.launcher,
                        store=self.store, submitted_at=0.0, data=self.data, restoring=attempt.restores())


def run_script(packed: bytes) -> bytes:
    """Ray task entry on a block's node: run the attempt's script; its outcome, pickled."""
    run: ScriptRun = pickle.loads(packed)  # noqa: S301  (the agent's own record)
    attempt = AttemptDir(run.attempt_dir)
    with open(attempt.job_stdout, "ab") as out, open(attempt.job_stderr, "ab") as err:
        proc = subprocess.Popen(["bash", str(attempt.script)], stdout=out, stderr=err, cwd=attempt.path,
                                start_new_session=True, preexec_fn=die_with_parent)
        guard_group(proc)
        try:
            returncode = proc.wait()
        finally:
            if proc.returncode is None:
                kill_group(proc)
    outcome: TaskOutcome | None = run.launcher.outcome(run.job(attempt))
    if outcome is None:
        outcome = failed("JobError", f"the attempt's script ended (exit {returncode}) in a pilot block "
                                     f"without a record: {attempt.stderr_tail().strip()[-500:]}")
    return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)


class BlockScripts:
    """The container and CRIU attempts of one pilot site, each a launcher's script run by a Ray task."""

    def __init__(self, batch: BatchAgent, tasks: RayTasks, ray: Any) -> None:
        self._batch = batch
        self._tasks = tasks
        self._remote = ray.remote(max_retries=0, num_cpus=0)(run_script)
        self._criu: dict[AttemptId, tuple[ScriptRun, BatchJob]] = {}  # CRIU attempts in blocks
        self._progress_read = 0.0

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Apptainer and CRIU checkpoints, where the site offers them."""
        launchers = self._batch.launchers
        if launchers is None:
            return frozenset()
        return frozenset({*([Capability.CONTAINER_APPTAINER] if launchers.apptainer is not None else []),
                          *([Capability.CHECKPOINT_CRIU] if launchers.criu is not None else [])})

    def start(self, block_id: str, subs: Sequence[Submission], *, stop_at: float) -> list[AttemptUpdate]:
        """Write each attempt's script and start it in the block; the attempts that could not start.

        A CRIU attempt checkpoints at `stop_at` (``time.time()``; the block's end less the lead).
        """
        launchers = self._batch.launchers
        if launchers is None:
            raise SiteAgentError(f"site {self._batch.config.name}: agent not started.",
                                 site=self._batch.config.name)
        failures: list[AttemptUpdate] = []
        runs: list[tuple[Submission, AttemptDir, Launcher]] = []
        for sub in subs:
            attempt = self._batch.transport.attempt(sub.attempt_id).create()
            try:
                launcher = launchers.for_(sub.spec)
                if isinstance(launcher, CriuLauncher):
                    launcher = dataclasses.replace(launcher, leave_by=stop_at)
                attempt.write_script(launcher.write(sub, attempt))
            except (LaunchRefused, ValueError) as exc:
                failures.append(refused(sub, exc))
                continue
            runs.append((sub, attempt, launcher))
        if runs:
            self._batch.transport.send([attempt for _, attempt, _ in runs])
        for sub, attempt, launcher in runs:
            run = ScriptRun(attempt_dir=str(attempt.path), spec=sub.spec,
                            launcher=launcher, store=job_store(self._batch.config, sub.data), data=sub.data)
            remote = self._remote.options(resources={f"block:{block_id}": float(sub.spec.resources.cores)})
            ref = remote.remote(pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL))
            self._tasks.track(ref, [sub.attempt_id], group=block_id, container=True)
            if isinstance(launcher, CriuLauncher):
                self._criu[sub.attempt_id] = (run, run.job(attempt))
        return failures

    def checkpoint(self, attempt_ids: Sequence[AttemptId], *, stop: bool) -> list[AttemptId]:
        """Ask these CRIU attempts for a checkpoint that ends them (`stop`) or a restart point; the asked."""
        asked = [a for a in attempt_ids if a in self._criu and a in self._tasks]
        for attempt_id in asked:
            attempt = self._criu[attempt_id][1].attempt
            attempt.request_restart_point(stop=stop)
            self._batch.transport.send_files(attempt, [attempt.restart_request_file.name])
        return asked

    def progress(self) -> list[AttemptUpdate]:
        """The newest restart point each CRIU attempt in a block took since the last call."""
        now = time.monotonic()
        if not self._criu or now - self._progress_read < PROGRESS_EVERY_S:
            return []
        self._progress_read = now
        self._criu = {a: run for a, run in self._criu.items() if a in self._tasks}
        self._batch.transport.fetch([job.attempt for _, job in self._criu.values()])
        updates = []
        for attempt_id, (_, job) in self._criu.items():
            ref, unread = job.restart_point(self._batch.config.name)
            updates += [AttemptUpdate(attempt_id=attempt_id, note=note) for note in unread]
            if ref is not None:
                updates.append(AttemptUpdate(attempt_id=attempt_id, checkpoint=ref))
        return updates
