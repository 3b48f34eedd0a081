"""Configuration of a Slurm site (data only: picklable, no I/O)."""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Literal

from metasched.data.stores import FileStore, StoreSpec
from metasched.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class SlurmSite:
    """A Slurm cluster reached from this machine with its own ``SLURM_CONF``.

    Args:
        name: the site's name within the campaign.
        slurm_conf: the slurm.conf every Slurm command for this site runs with.
        shared_dir: a directory this machine and the compute nodes share (same path on both); attempts,
            their outputs and the staged worker live under ``<shared_dir>/.metasched``.
        partition, account, qos: passed to sbatch when set.
        mode: "batch" (one Slurm job per attempt). "pilot" is not available yet.
        max_jobs: the most jobs metasched keeps queued or running at this site.
        poll_interval: seconds between squeue calls (one call per interval, whatever the task count).
        python: the Python on the compute nodes (same minor version as this machine's).
        worker_pythonpath: where compute nodes import metasched from; default: a copy staged in
            shared_dir (metasched and cloudpickle are pure Python).
        gpus_per_node: GPUs a node offers (for feasibility; Slurm is asked with --gres=gpu:N).
        signal_lead_s: seconds before the time limit at which Slurm sends USR1 (recorded as a warning).
        vanish_after_polls: polls a job may be missing from squeue, without an outcome file, before it
            is declared VANISHED and resubmitted.
        accounting: whether the site keeps accounting in slurmdbd, so ``sacct`` explains a job that left
            squeue without an outcome file (purged after MinJobAge, or while metasched was down) instead
            of it being declared VANISHED; default: asked once at start (``scontrol show config``).
        command_timeout_s: timeout of each Slurm command.
        stall_after_s: seconds a job may wait on nodes that are down, drained or held (Slurm reasons such
            as ReqNodeNotAvail) before metasched withdraws it (scancel) and places the task again, at no
            cost to its retries; the site takes no new work while none of its nodes is usable.
        store: where results bigger than the campaign's data threshold go (a ``FileStore``,
            ``RedisStore`` or ``EndpointStore`` reachable from the compute nodes); default a file store in
            ``<shared_dir>/.metasched/store``.
        checkpoint_dir: a node-local or shared directory, *at the same absolute path on every site a
            task may migrate between*, where checkpointable command tasks (``checkpoint="criu"``) get
            their working directories; None: the site runs no checkpointable tasks. CRIU must be on the
            nodes (``criu``) and jobs must be allowed CAP_SYS_ADMIN (see docs/checkpointing.md).
        criu: the CRIU command on the compute nodes.
        login: an argv prefix that runs the site's own Slurm client commands on its login node, passing
            the rest of the argv through unchanged (e.g. ``("docker", "exec", "-i", "site-login")``); for
            sites whose Slurm release this machine's client cannot talk to. Default: this machine's
            client. ``SLURM_CONF`` is handed on with ``env``.
        container_runtimes: ``("apptainer",)`` when the compute nodes run ``apptainer`` for tasks with
            ``container=ms.Image(..., sif=...)`` (see docs/containers.md).
        apptainer: how a job runs an image: the argv before ``--bind ... IMAGE COMMAND``; add
            ``"--userns"`` where Apptainer must mount SIFs with squashfuse (no setuid, no loop devices).
    """

    kind: ClassVar[str] = "slurm"
    name: str
    _: KW_ONLY
    slurm_conf: str
    shared_dir: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mode: Literal["batch", "pilot"] = "batch"
    max_jobs: int = 100
    poll_interval: float = 1.0
    python: str = "python3"
    worker_pythonpath: str | None = None
    gpus_per_node: int = 0
    signal_lead_s: int = 60
    vanish_after_polls: int = 3
    accounting: bool | None = None
    command_timeout_s: float = 30.0
    stall_after_s: float = 120.0
    store: StoreSpec | None = None
    checkpoint_dir: str | None = None
    criu: str = "criu"
    login: tuple[str, ...] = ()
    container_runtimes: tuple[str, ...] = ()
    apptainer: tuple[str, ...] = ("apptainer", "--quiet", "exec")

    def default_store(self) -> StoreSpec:
        """The site's store when none is configured: a file store on the shared filesystem."""
        return FileStore(os.path.join(self.shared_dir, ".metasched", "store"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "login", tuple(self.login))
        object.__setattr__(self, "container_runtimes", tuple(self.container_runtimes))
        object.__setattr__(self, "apptainer", tuple(self.apptainer))
        if any(r != "apptainer" for r in self.container_runtimes):
            raise ConfigurationError(f"site {self.name}: container_runtimes of a Slurm site may only contain "
                                     f"'apptainer', got {list(self.container_runtimes)}.")
        if self.mode != "batch":
            raise ConfigurationError(
                f"site {self.name}: mode={self.mode!r} is not available yet; use mode='batch'."
            )
        if self.max_jobs < 1:
            raise ConfigurationError(f"site {self.name}: max_jobs must be at least 1, got {self.max_jobs}.")
        if self.poll_interval <= 0:
            raise ConfigurationError(f"site {self.name}: poll_interval must be positive.")
