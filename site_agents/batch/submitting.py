"""Writing attempts and submitting their jobs: the batch agent's outgoing half.

Each attempt's directory and job script are written here (``AttemptDir.here``), then every directory of
the batch goes to the site in one ``Transport.send`` (nothing to do on a shared filesystem), then the jobs
are submitted a few at a time (each submission is a round trip to the server). Once the server leaves one
submission unanswered, the batch's others are not sent: each would wait as long (Slurm's sbatch ~9 s against
a stopped controller), holding up the scheduler's step batch after batch while the server is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from metasched.attempt_dir import AttemptDir
from metasched.data.objects import DataContext
from metasched.data.stores import StoreSpec
from metasched.errors import SiteAgentError
from metasched.outcomes import failed
from metasched.records import AttemptId, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from site_agents.batch.config import BatchSite
from site_agents.batch.dialect import Dialect, JobRequest, with_header
from site_agents.batch.jobs import BatchJob, Launcher
from site_agents.batch.launchers import Launchers, LaunchRefused, refused, time_limit_s, warning_lead_s
from site_agents.batch.transport import Transport

SUBMIT_THREADS = 4  # submissions in flight at once (each is a round trip to the server)

#: What the agent does with an attempt the server did not take (it is placed again at no cost).
Refused = Callable[[AttemptId, str], AttemptUpdate]


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """An attempt whose directory and job script are written, not yet submitted."""

    sub: Submission
    request: JobRequest
    launcher: Launcher
    header: list[str]


@dataclass(slots=True)
class _Silence:
    """A batch's first submission the server left unanswered (set from the submitting threads)."""

    reason: str = ""


def job_name(site: str, attempt_id: str) -> str:
    """The scheduler's job name of an attempt: unique, and starts with a letter (as PBS requires)."""
    return f"ms-{site}-{attempt_id}"


def job_store(config: BatchSite, data: DataContext | None) -> StoreSpec:
    """Where an attempt's big results and checkpoints go: its campaign's store here, else the site's."""
    return (data.store if data is not None else None) or config.store or config.default_store()


class Submitter:
    """Turns submissions into jobs at one site (see the module docstring)."""

    def __init__(self, config: BatchSite, dialect: Dialect, transport: Transport, refused: Refused) -> None:
        self.config, self.dialect, self.transport = config, dialect, transport
        self.refused = refused
        self._pool = ThreadPoolExecutor(max_workers=SUBMIT_THREADS,
                                        thread_name_prefix=f"submit-{config.name}")

    def submit(self, submissions: Sequence[Submission], launchers: Launchers, *, for_group: bool,
               memory_tracked: bool) -> list[tuple[BatchJob | None, AttemptUpdate]]:
        """Each submission's job (None if it did not start) and its update, in order."""
        written = [self._write(sub, launchers, for_group=for_group, memory_tracked=memory_tracked)
                   for sub in submissions]
        ready = [w for w in written if isinstance(w, Written)]
        done: dict[AttemptId, tuple[BatchJob | None, AttemptUpdate]]
        try:
            self.transport.send([w.request.attempt for w in ready])
        except SiteAgentError as exc:  # none reached the site
            done = {w.sub.attempt_id: (None, self.refused(w.sub.attempt_id, str(exc))) for w in ready}
        else:
            silence = _Silence()
            jobs = self._pool.map(lambda w: self._submit_one(w, silence), ready)
            done = dict(zip([w.sub.attempt_id for w in ready], jobs, strict=True))
        return [done[w.sub.attempt_id] if isinstance(w, Written) else (None, w) for w in written]

    def close(self) -> None:
        """Wait for submissions in flight."""
        self._pool.shutdown(wait=True)

    def _write(self, sub: Submission, launchers: Launchers, *, for_group: bool,
               memory_tracked: bool) -> Written | AttemptUpdate:
        """The attempt's directory and job script, or why it cannot start here."""
        attempt = self.transport.attempt(sub.attempt_id).create(for_group=for_group)
        request = self._request(sub.spec, attempt, memory_tracked)
        try:
            launcher = launchers.for_(sub.spec)
            header = self.dialect.header(request)
            attempt.write_script(with_header(launcher.write(sub, attempt), header))
        except (LaunchRefused, ValueError) as exc:
            return refused(sub, exc)
        return Written(sub=sub, request=request, launcher=launcher, header=header)

    def _submit_one(self, written: Written, silence: _Silence) -> tuple[BatchJob | None, AttemptUpdate]:
        sub, request = written.sub, written.request
        if silence.reason:
            return None, self.refused(sub.attempt_id, f"not submitted, the server left another submission "
                                                      f"unanswered: {silence.reason}")
        try:
            out = self.transport.runner.run(self.dialect.submit_argv(request, written.header))
        except SiteAgentError as exc:  # timed out or cannot run: this attempt only, at no cost
            silence.reason = str(exc)
            return None, self.refused(sub.attempt_id, silence.reason)
        job_id = self.dialect.parse_submitted(out) if out.ok else None
        if job_id is None and not out.ok and self.dialect.unreachable(out):
            silence.reason = out.describe()
            return None, self.refused(sub.attempt_id, silence.reason)
        if job_id is None:
            said = " ".join(f"{out.stderr} {out.stdout}".split())  # some print their errors on stdout
            return None, AttemptUpdate(attempt_id=sub.attempt_id, outcome=failed(
                "SubmitError", f"{out.argv[0]} at site {self.config.name} refused task {sub.spec.name!r} "
                f"(exit {out.returncode}): {said[-600:]}"))
        job = BatchJob(attempt_id=sub.attempt_id, spec=sub.spec, job_id=job_id, attempt=request.attempt,
                       launcher=written.launcher, store=job_store(self.config, sub.data),
                       submitted_at=time.monotonic(), data=sub.data, restoring=sub.restore is not None)
        return job, AttemptUpdate(attempt_id=sub.attempt_id, native_id=job_id)

    def _request(self, spec: TaskSpec, attempt: AttemptDir, memory_tracked: bool) -> JobRequest:
        walltime = spec.resources.walltime_s
        lead = warning_lead_s(walltime, self.config.signal_lead_s) if walltime is not None else None
        return JobRequest(spec=spec, name=job_name(self.config.name, attempt.attempt_id), attempt=attempt,
                          limit_s=time_limit_s(spec), warning_lead_s=lead, nodes_report_memory=memory_tracked)
