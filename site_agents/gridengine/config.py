"""Configuration of a Grid Engine site (data only: picklable, no I/O)."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from metasched.data.stores import StoreSpec
from site_agents.batch_config import check_batch_config, shared_store


@dataclass(frozen=True, slots=True)
class GridEngineSite:
    """A Grid Engine (SGE 8.1.9 family) cell reached with its own client programs.

    Args:
        name: the site's name within the campaign.
        shared_dir: a directory this machine and the execution hosts share (same path on both);
            attempts, their outputs and the staged worker live under ``<shared_dir>/.metasched``.
        login: an argv prefix that runs the cell's client programs (``qsub``, ``qstat``, ``qacct``,
            ``qdel``) on a submit host, passing the rest of the argv through (e.g.
            ``("docker", "exec", "-i", "ge-head")`` or ``("ssh", "head")``); default this machine.
        environment: variables the client programs need (``SGE_ROOT``, ``SGE_CELL``,
            ``SGE_QMASTER_PORT``...), handed on with ``env``; default whatever the login shell has.
        queue: passed as ``-q``; project: passed as ``-P``.
        pe: the parallel environment multi-core tasks ask for (``-pe <pe> <cores>``).
        max_jobs: the most jobs metasched keeps queued or running at this site.
        poll_interval: seconds between ``qstat`` calls (one call per interval, whatever the task count).
        python: the Python on the execution hosts (same minor version as this machine's).
        worker_pythonpath: where execution hosts import metasched from; default a copy staged in
            shared_dir.
        vanish_after_polls: polls a job may be missing from qstat and from ``qacct`` without an
            outcome file before it is declared lost.
        command_timeout_s: timeout of each Grid Engine command.
        store: where results bigger than the campaign's data threshold go; default a file store in
            ``<shared_dir>/.metasched/store``.
    """

    kind: ClassVar[str] = "gridengine"
    name: str
    _: KW_ONLY
    shared_dir: str
    login: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    queue: str | None = None
    project: str | None = None
    pe: str = "smp"
    max_jobs: int = 100
    poll_interval: float = 1.0
    python: str = "python3"
    worker_pythonpath: str | None = None
    vanish_after_polls: int = 5
    command_timeout_s: float = 30.0
    store: StoreSpec | None = None

    def __post_init__(self) -> None:
        check_batch_config(f"gridengine site {self.name}", shared_dir=self.shared_dir, max_jobs=self.max_jobs,
                           poll_interval=self.poll_interval)
        object.__setattr__(self, "login", tuple(self.login))

    def default_store(self) -> StoreSpec:
        """A file store in the shared directory (every execution host sees it)."""
        return shared_store(self.shared_dir)
