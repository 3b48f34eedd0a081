"""Configuration of a Slurm site (data only: picklable, no I/O); the shared batch fields are BatchSite's."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from metasched.errors import ConfigurationError
from site_agents.batch.config import BatchSite


@dataclass(frozen=True, slots=True)
class SlurmSite(BatchSite):
    """A Slurm cluster reached from this machine (its own client, or a login node's through `login`).

    Args (besides the batch fields of ``BatchSite``):
        slurm_conf: the slurm.conf every Slurm command for this site runs with (``SLURM_CONF``), a path on
            the side that runs the commands: this machine, or the login node when `login` or
            ``transport="ssh"`` is given. May be left out then (the login node's own configuration applies).
        partition, account, qos: passed to sbatch when set.
        accounting: whether the site keeps accounting in slurmdbd, so ``sacct`` explains a job that left
            squeue without an outcome record (purged after MinJobAge, or while metasched was down)
            instead of it being declared VANISHED; default: asked once at start (``scontrol show config``).
    """

    kind: ClassVar[str] = "slurm"
    _: KW_ONLY
    slurm_conf: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    accounting: bool | None = None

    def __post_init__(self) -> None:
        BatchSite.__post_init__(self)
        if self.slurm_conf is None and not self.login and self.transport == "local":
            raise ConfigurationError(f"slurm site {self.name}: give slurm_conf (the cluster's slurm.conf), "
                                     "or a login prefix that runs the site's own Slurm client.")

    def local_paths(self) -> list[tuple[str, str, str]]:
        """The shared directory, and slurm_conf where this machine's client reads it (no login)."""
        paths = BatchSite.local_paths(self)
        if self.slurm_conf and not self.login and self.transport == "local":
            paths.append(("slurm_conf", self.slurm_conf, "file"))
        return paths
