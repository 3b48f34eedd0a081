"""Container attempts in pilot blocks: batch mode's job script, started by a Ray task in the block.

In batch mode a container attempt (``container=Image(sif=...)``) is a job script its launcher writes:
check the SIF and the image's Python on the node, then ``apptainer exec``. In a pilot block the same
script runs as the child of a Ray task on one of the block's nodes instead of as a job of its own: the
launcher, the script, its records and the reading of them are batch mode's; only who starts the script
differs. The Ray task reads the outcome on the node, where the attempt directory is the site's own (also
at a site over SSH), and returns it.

The script runs in its own session, with the Ray worker as its parent: a force-cancelled attempt's shell
is killed with the worker, and whatever it started (``apptainer exec``) ends at the latest with the
block's job.
"""

from __future__ import annotations

import os
import pickle
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metasched.attempt_dir import AttemptDir
from metasched.data.objects import DataContext
from metasched.data.stores import StoreSpec
from metasched.errors import SiteAgentError
from metasched.outcomes import TaskOutcome, failed
from metasched.records import AttemptId, Capability, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from metasched.worker import die_with_parent, kill_group
from site_agents.batch.agent import BatchAgent
from site_agents.batch.jobs import BatchJob, Launcher
from site_agents.batch.launchers import LaunchRefused, refused
from site_agents.batch.submitting import job_store
from site_agents.ray_tasks import RayTasks


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptRun:
    """What the Ray task on the node needs: the attempt's directory and how to read its outcome."""

    attempt_dir: str  # as the site's nodes see it
    spec: TaskSpec
    launcher: Launcher
    store: StoreSpec
    data: DataContext | None


def run_script(packed: bytes) -> bytes:
    """Ray task entry on a block's node: run the attempt's script; its outcome, pickled."""
    run: ScriptRun = pickle.loads(packed)  # noqa: S301  (the agent's own record)
    attempt = AttemptDir(run.attempt_dir)
    with open(attempt.job_stdout, "ab") as out, open(attempt.job_stderr, "ab") as err:
        proc = subprocess.Popen(["bash", str(attempt.script)], stdout=out, stderr=err, cwd=attempt.path,
                                start_new_session=True, preexec_fn=die_with_parent)
        try:
            returncode = proc.wait()
        finally:
            if proc.returncode is None:
                kill_group(proc)
    job = BatchJob(attempt_id=AttemptId(attempt.attempt_id), spec=run.spec,
                   job_id=os.environ.get("SLURM_JOB_ID", ""), attempt=attempt, launcher=run.launcher,
                   store=run.store, submitted_at=0.0, data=run.data)
    outcome: TaskOutcome | None = run.launcher.outcome(job)
    if outcome is None:
        outcome = failed("JobError", f"the attempt's script ended (exit {returncode}) in a pilot block "
                                     f"without a record: {attempt.stderr_tail().strip()[-500:]}")
    return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)


class BlockScripts:
    """The container attempts of one pilot site, each a launcher's script run by a Ray task in a block."""

    def __init__(self, batch: BatchAgent, tasks: RayTasks, ray: Any) -> None:
        self._batch = batch
        self._tasks = tasks
        self._remote = ray.remote(max_retries=0, num_cpus=0)(run_script)

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Apptainer, where the site offers it."""
        offered = self._batch.launchers is not None and self._batch.launchers.apptainer is not None
        return frozenset({Capability.CONTAINER_APPTAINER}) if offered else frozenset()

    def start(self, block_id: str, subs: Sequence[Submission]) -> list[AttemptUpdate]:
        """Write each attempt's script and start it in the block; the attempts that could not start."""
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
        return failures
