"""What the dialect unit tests feed their builders and parsers: a command's output, one attempt's job."""

from __future__ import annotations

from metasched.attempt_dir import AttemptDir
from metasched.records import CommandSpec, Resources, TaskId, TaskKind, TaskSpec
from site_agents.batch.dialect import JobRequest
from site_agents.runner import CommandOutput


def output(stdout: str = "", stderr: str = "", returncode: int = 0) -> CommandOutput:
    """A finished scheduler command's output, as the runner returns it."""
    return CommandOutput(argv=("qstat",), returncode=returncode, stdout=stdout, stderr=stderr)


def job_request(name: str, directory: str = "/s/a1", **resources: object) -> JobRequest:
    """The job of a command task ``true`` named `name` in attempt directory `directory` (limit 151 s)."""
    spec = TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND,
                    command=CommandSpec(argv=("true",)),
                    resources=Resources(**resources))  # type: ignore[arg-type]
    return JobRequest(spec=spec, name=name, attempt=AttemptDir(directory), limit_s=151.0, warning_lead_s=None)
