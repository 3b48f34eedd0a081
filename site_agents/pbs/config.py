"""Configuration of a PBS-family site (data only: picklable, no I/O)."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from metasched.data.stores import StoreSpec
from metasched.errors import ConfigurationError
from site_agents.batch_config import check_batch_config, shared_store

DIALECTS = ("openpbs", "torque")


@dataclass(frozen=True, slots=True)
class PBSSite:
    """A PBS-family server (OpenPBS / PBS Pro, or Torque) reached with its own client programs.

    Args:
        name: the site's name within the campaign.
        shared_dir: a directory this machine and the execution hosts share (same path on both);
            attempts, their outputs and the staged worker live under ``<shared_dir>/.metasched``.
        dialect: "openpbs" (OpenPBS 23.06 / PBS Pro: ``select`` chunks, ``qstat -f -F json -x``) or
            "torque" (``nodes=1:ppn=C``, text ``qstat -f``).
        login: an argv prefix that runs the client programs (``qsub``, ``qstat``, ``qdel``,
            ``pbsnodes``) on a submit host (e.g. ``("ssh", "login1")``); default this machine.
        environment: variables the client programs need (``PBS_SERVER``...), handed on with ``env``.
        queue: passed as ``-q``; account: passed as ``-A``.
        max_jobs: the most jobs metasched keeps queued or running at this site.
        poll_interval: seconds between ``qstat`` calls (one call per interval, whatever the task count).
        python: the Python on the execution hosts (same minor version as this machine's).
        worker_pythonpath: where execution hosts import metasched from; default a copy staged in
            shared_dir.
        vanish_after_polls: polls a job may be missing from qstat without an outcome file before it is
            declared lost (OpenPBS keeps finished jobs only with job history enabled).
        command_timeout_s: timeout of each PBS command.
        store: where results bigger than the campaign's data threshold go; default a file store in
            ``<shared_dir>/.metasched/store``.
    """

    kind: ClassVar[str] = "pbs"
    name: str
    _: KW_ONLY
    shared_dir: str
    dialect: str = "openpbs"
    login: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    queue: str | None = None
    account: str | None = None
    max_jobs: int = 100
    poll_interval: float = 1.0
    python: str = "python3"
    worker_pythonpath: str | None = None
    vanish_after_polls: int = 5
    command_timeout_s: float = 30.0
    store: StoreSpec | None = None

    def __post_init__(self) -> None:
        where = f"pbs site {self.name}"
        if self.dialect not in DIALECTS:
            raise ConfigurationError(f"{where}: dialect must be one of {', '.join(DIALECTS)}, got "
                                     f"{self.dialect!r}.")
        check_batch_config(where, shared_dir=self.shared_dir, max_jobs=self.max_jobs,
                           poll_interval=self.poll_interval)
        object.__setattr__(self, "login", tuple(self.login))

    def default_store(self) -> StoreSpec:
        """A file store in the shared directory (every execution host sees it)."""
        return shared_store(self.shared_dir)
