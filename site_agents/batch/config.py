"""The configuration every batch site shares (a base of SlurmSite, PBSSite, GridEngineSite): data only."""

from __future__ import annotations

import hashlib
import os
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from metasched.attempt_dir import site_area
from metasched.catalog import metasched_home
from metasched.data.stores import FileStore, SshFileStore, StoreSpec
from metasched.errors import ConfigurationError
from metasched.sites.schema import (
    FORBID_EXTRA,
    AbsolutePath,
    NonEmptyArgv,
    NonNegativeInt,
    OptionalAbsolutePath,
    PositiveFloat,
    PositiveInt,
    StoreOption,
    check_fields,
)

MIN_BLOCK_WALLTIME_S = 120.0  # pilots leave 30 s before their block's walltime


@dataclass(frozen=True, slots=True)
class BatchSite:
    """Fields of every batch site (see each kind's class for its own).

    Args:
        name: the site's name within the campaign.
        shared_dir: a directory this machine and the compute nodes share (same path on both); attempts,
            their outputs and the staged worker live under ``<shared_dir>/.metasched``. With
            ``transport="ssh"``: the directory at the site (its scratch), which this machine need not see.
        transport: "local" (this machine shares the site's filesystem, and runs its client programs here or
            through `login`) or "ssh" (the site is reached with ``ssh HOST``; see docs/ssh.md).
        host: the site's login node for ``transport="ssh"``: a name or a ``~/.ssh/config`` alias.
        ssh_options: more ssh options for every connection to `host` (e.g. ``("-F", "/path/ssh_config")``).
        local_dir: where this machine keeps its copies of an SSH site's attempt directories; default
            ``$METASCHED_HOME/sites/<name>-<hash>``.
        ssh_control_path: the socket of an SSH master you opened yourself (``ssh -M -S PATH -fN HOST``, e.g.
            to answer a one-time code); metasched then uses it and never opens or closes one.
        login: an argv prefix that runs the site's client programs on a submit host, passing the rest
            of the argv through unchanged (e.g. ``("docker", "exec", "-i", "login1")``); default: this
            machine's client programs. Variables of `environment` are handed on with ``env``.
        environment: variables the client programs need (``SGE_ROOT``, ``PBS_SERVER``...).
        mode: "batch" (one job per attempt) or "pilot" (Ray worker nodes in elastic blocks of jobs, joining
            the campaign's Ray head; the fields below; see docs/pilots.md).
        nodes_per_block: nodes of one pilot block (one Ray worker node each).
        cores_per_node: cores a block asks for on each node (0: the site's largest node).
        block_walltime: the time limit of each block, in seconds; a task whose walltime does not fit in
            what is left of a block is not sent there.
        init_blocks, min_blocks, max_blocks: blocks started at once, kept while idle, and at most.
        idle_timeout: seconds a block may run no task before it is cancelled (down to min_blocks).
        block_object_store_mb: the Ray object store of each pilot node.
        max_jobs: the most jobs metasched keeps queued or running at this site.
        poll_interval: seconds between status calls (one call per interval, whatever the task count).
        gpus_per_node: GPUs a node offers (for feasibility; asked for per task as the dialect says).
        python: the Python on the compute nodes (same minor version as this machine's).
        worker_pythonpath: where compute nodes import metasched from; default a copy staged in
            shared_dir (metasched and the worker's libraries are pure Python or CPython 3.11 wheels).
        vanish_after_polls: polls a job may be missing from the scheduler's listing (and accounting),
            without an outcome record, before it is declared VANISHED and its task placed again.
        command_timeout_s: timeout of each scheduler command.
        stall_after_s: seconds a job may wait on nodes that are down, drained or held before metasched
            withdraws it and places the task again, at no cost to its retries.
        store: where results bigger than the campaign's data threshold go; default a file store in
            ``<shared_dir>/.metasched/store``.
        signal_lead_s: seconds before the time limit at which the scheduler warns a job (USR1), where
            it can (Slurm); checkpointable tasks checkpoint then.
        checkpoint_dir: where ``checkpoint="criu"`` tasks get their working directories, at the same
            absolute path on every site a task may migrate between; None: no CRIU tasks here. Offered
            where the scheduler can signal a job (see docs/checkpointing.md).
        criu: the CRIU command on the compute nodes.
        container_runtimes: ``("apptainer",)`` when the compute nodes run ``apptainer`` for tasks with
            ``container=ms.Image(..., sif=...)`` (see docs/containers.md).
        apptainer: how a job runs an image: the argv before ``--bind ... IMAGE COMMAND``.
    """

    __pydantic_config__ = FORBID_EXTRA
    kind: ClassVar[str] = "batch"
    name: str
    _: KW_ONLY
    shared_dir: AbsolutePath
    transport: Literal["local", "ssh"] = "local"
    host: str = ""
    ssh_options: tuple[str, ...] = ()
    local_dir: OptionalAbsolutePath = None
    ssh_control_path: OptionalAbsolutePath = None
    login: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    mode: Literal["batch", "pilot"] = "batch"
    nodes_per_block: PositiveInt = 1
    cores_per_node: NonNegativeInt = 0
    block_walltime: PositiveFloat = 3600.0
    init_blocks: NonNegativeInt = 1
    min_blocks: NonNegativeInt = 0
    max_blocks: PositiveInt = 4
    idle_timeout: PositiveFloat = 120.0
    block_object_store_mb: PositiveInt = 256
    max_jobs: PositiveInt = 100
    poll_interval: PositiveFloat = 1.0
    gpus_per_node: NonNegativeInt = 0
    python: str = "python3"
    worker_pythonpath: str | None = None
    vanish_after_polls: PositiveInt = 5
    command_timeout_s: PositiveFloat = 30.0
    stall_after_s: PositiveFloat = 120.0
    store: StoreOption = None
    signal_lead_s: NonNegativeInt = 60
    checkpoint_dir: OptionalAbsolutePath = None
    criu: str = "criu"
    container_runtimes: tuple[Literal["apptainer"], ...] = ()
    apptainer: NonEmptyArgv = ("apptainer", "--quiet", "exec")

    def __post_init__(self) -> None:
        for name in ("login", "container_runtimes", "apptainer", "ssh_options"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "environment", dict(self.environment))
        if self.login and os.path.basename(self.login[0]) in ("ssh", "rsh"):
            raise ConfigurationError(
                f"{self.kind} site {self.name}: login through {self.login[0]} is not supported: ssh joins "
                "the command into a shell string on the other side, so arguments would be re-split there. "
                "For a site reached over SSH use transport = \"ssh\" and host = \"<login node>\" "
                "(docs/ssh.md); login is for prefixes that pass the argv through unchanged (docker exec, "
                "sudo -u USER).")
        self._check_transport()
        check_fields(self)
        if self.mode == "pilot" and self.block_walltime < MIN_BLOCK_WALLTIME_S:
            raise ConfigurationError(
                f"{self.kind} site {self.name}: block_walltime must be at least {MIN_BLOCK_WALLTIME_S:g} s "
                f"in pilot mode (pilots leave 30 s before it), got {self.block_walltime:g}.")
        if not self.min_blocks <= self.max_blocks or self.init_blocks > self.max_blocks:
            raise ConfigurationError(
                f"{self.kind} site {self.name}: blocks must satisfy min_blocks <= max_blocks and init_blocks "
                f"<= max_blocks, got min={self.min_blocks}, init={self.init_blocks}, max={self.max_blocks}.")

    def _check_transport(self) -> None:
        where = f"{self.kind} site {self.name}"
        if self.transport == "local":
            if self.host or self.ssh_options or self.local_dir or self.ssh_control_path:
                raise ConfigurationError(f"{where}: host, ssh_options, ssh_control_path and local_dir are "
                                         "for transport = \"ssh\"; set transport = \"ssh\" or remove them.")
            return
        if not self.host or self.host.startswith("-"):
            raise ConfigurationError(f"{where}: transport = \"ssh\" needs host = \"<login node or "
                                     f"~/.ssh/config alias>\", got {self.host!r}.")
        if self.login:
            raise ConfigurationError(f"{where}: login and transport = \"ssh\" do not go together; ssh "
                                     "reaches the login node (ssh_options or ~/.ssh/config for ProxyJump).")
        if isinstance(self.store, FileStore):
            raise ConfigurationError(
                f"{where}: store = file store {self.store.path!r} is a directory of this machine, which "
                "the site's jobs do not see over SSH; leave store out (a store in shared_dir at the site) "
                "or give { kind = \"ssh-file\", host = ..., path = ... }.")

    def prestarts(self) -> bool:
        """Pilot mode with first blocks: they are submitted while the campaign's Ray head starts."""
        return self.mode == "pilot" and self.init_blocks > 0

    def local_paths(self) -> list[tuple[str, str, str]]:
        """The shared directory must exist here (this machine is the site's login node or shares its FS)."""
        return [] if self.transport == "ssh" else [("shared_dir", self.shared_dir, "directory")]

    def default_store(self) -> StoreSpec:
        """A file store in the shared directory (every compute node sees it).

        Over SSH, any process not at the site reaches it through `host` (``metasched.data.remote``).
        """
        if self.transport == "ssh":
            return SshFileStore(self.host, str(site_area(self.shared_dir) / "store"),
                                ssh_options=self.ssh_options, control_path=self.ssh_control_path)
        return FileStore(str(site_area(self.shared_dir) / "store"))

    def local_copy_dir(self) -> Path:
        """Where this machine keeps its copy of an SSH site's area (`local_dir`, or a default).

        The default is ``$METASCHED_HOME/sites/<name>-<hash of host and shared_dir>``.
        """
        if self.local_dir:
            return Path(self.local_dir)
        digest = hashlib.sha256(f"{self.host}\0{self.shared_dir}".encode()).hexdigest()[:10]
        return metasched_home() / "sites" / f"{self.name}-{digest}"
