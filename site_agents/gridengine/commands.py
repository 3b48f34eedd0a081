"""Pure builders of Grid Engine command lines and ``#$`` job-script directives (no I/O)."""

from __future__ import annotations

import math

from metasched.records import TaskSpec
from site_agents.batch import WALLTIME_MARGIN_S, check_directives


def directives(*, spec: TaskSpec, name: str, attempt_dir: str, queue: str | None = None,
               project: str | None = None, pe: str = "smp") -> list[str]:
    """The ``#$`` lines of one attempt's job script.

    ``-S /bin/bash`` (not the queue's shell), ``-wd`` the attempt directory, separate stdout/stderr
    files there, ``-r n`` (metasched, not Grid Engine, decides about another attempt), cores as slots
    of the parallel environment `pe`, memory as ``h_vmem`` per slot, walltime as ``h_rt``.
    """
    res = spec.resources
    lines = [f"-N {name}", "-S /bin/bash", f"-wd {attempt_dir}", f"-o {attempt_dir}/job.out",
             f"-e {attempt_dir}/job.err", "-r n"]
    if res.cores > 1:
        lines.append(f"-pe {pe} {res.cores}")
    if res.memory_mb:
        lines.append(f"-l h_vmem={math.ceil(res.memory_mb / max(1, res.cores))}M")
    if res.walltime_s is not None:
        lines.append(f"-l h_rt={math.ceil(res.walltime_s) + WALLTIME_MARGIN_S}")
    if queue:
        lines.append(f"-q {queue}")
    if project:
        lines.append(f"-P {project}")
    check_directives(spec, lines, "Grid Engine")
    return [f"#$ {line}" for line in lines]


def qsub_argv(script: str) -> list[str]:
    """Submit a script whose directives say everything; -terse prints only the job id."""
    return ["qsub", "-terse", script]


def qstat_argv() -> list[str]:
    """Every job of this user, as XML."""
    return ["qstat", "-xml"]


def qstat_f_argv() -> list[str]:
    """Queue instances and their slots, as XML."""
    return ["qstat", "-f", "-xml"]


def qacct_argv(job_id: str) -> list[str]:
    """Accounting of one finished job."""
    return ["qacct", "-j", job_id]


def qstat_j_argv(job_id: str) -> list[str]:
    """Everything qstat knows of one job (its error reason, for jobs in Eqw)."""
    return ["qstat", "-j", job_id]
