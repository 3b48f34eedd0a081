"""The seam between the global scheduler and every kind of site.

A site kind is a configuration record (``SiteConfig``: data only, picklable) and an agent (``SiteAgent``)
built from it, declared together as a ``metasched.sites.kind.SiteKind`` and found through the entry-point
group ``metasched.site_agents`` (``metasched.sites.registry``), so an external package adds a site kind
without touching metasched. metasched owns this seam and never imports a concrete kind; the
``site_agents`` package implements it. Agents do no I/O in their constructor; ``start`` connects,
``close`` releases everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from metasched.data.objects import DataContext, DataRef
from metasched.outcomes import TaskOutcome
from metasched.records import AttemptId, Resources, SiteLoad, SiteName, TaskId, TaskSpec


@runtime_checkable
class SiteConfig(Protocol):
    """What every site configuration has: a unique name and the kind of agent that serves it."""

    kind: ClassVar[str]

    @property
    def name(self) -> str:
        """The site's unique name within a campaign."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """One attempt handed to an agent: the task, its function (if any) and its dependencies' results.

    ``data`` (when the campaign has a data layer) tells the worker where big results go and where its
    stored inputs are at this site; a stored dependency result is an encoded ``DataRef``.
    """

    attempt_id: AttemptId
    spec: TaskSpec
    function: bytes | None = None
    dependency_results: dict[TaskId, bytes] = field(default_factory=dict)
    data: DataContext | None = None
    restore: DataRef | None = None  # continue from this checkpoint (a replica in this site's store)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptUpdate:
    """What a poll learned about one attempt: it started running, or it ended with `outcome`.

    ``note`` is something worth keeping in the attempt's record that changes nothing (e.g. the scheduler
    ran the job twice and the second run was refused).
    """

    attempt_id: AttemptId
    running: bool = False
    outcome: TaskOutcome | None = None
    native_id: str | None = None
    checkpoint: DataRef | None = None  # a restart point the running attempt saved
    note: str = ""


@runtime_checkable
class SiteAgent(Protocol):
    """Submits, watches and cancels attempts at one site. Polling is batched: one call per site."""

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        ...

    def start(self) -> None:
        """Connect to the site; raise SiteAgentError with a fix if it cannot be used."""
        ...

    def submit(self, submissions: Sequence[Submission]) -> None:
        """Hand attempts to the site. Must not block on the attempts running."""
        ...

    def poll(self) -> list[AttemptUpdate]:
        """Report every attempt that started or ended since the last poll, in one batched call."""
        ...

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Stop attempts; unknown or finished ids are ignored."""
        ...

    def load(self) -> SiteLoad:
        """The site's capacity, what is in flight and the estimated wait for a new attempt."""
        ...

    def close(self) -> None:
        """Cancel what is still running and release the site's resources."""
        ...


@runtime_checkable
class NamesLocalPaths(Protocol):
    """A site configuration naming paths that must exist on this machine (``config check`` looks)."""

    def local_paths(self) -> list[tuple[str, str, str]]:
        """(field, path, "file" or "directory") of each such path."""
        ...


@runtime_checkable
class EmbeddedRaySite(Protocol):
    """A site whose attempts run on the campaign's Ray cluster: the embedded Ray must offer these."""

    def ray_resources(self) -> dict[str, float]:
        """Custom Ray resources (and ``"CPU"``) the embedded ``ray.init()`` adds for this site."""
        ...


@runtime_checkable
class CheckpointingAgent(Protocol):
    """An agent that can stop attempts with a checkpoint (reported as ``TaskOutcome.checkpoint``)."""

    def checkpoint(self, attempt_ids: Sequence[AttemptId], *, stop: bool = True) -> list[AttemptId]:
        """Ask these attempts to checkpoint and stop; returns the ones that were asked.

        With stop=False they take a restart point and go on instead.
        """
        ...


@runtime_checkable
class ShapeAwareAgent(Protocol):
    """An agent whose predicted wait depends on a task's resource shape (batch sites: node fit, backfill)."""

    def expect(self, shapes: Sequence[Resources]) -> None:
        """Shapes of tasks the campaign has (each told once): the agent may ask its scheduler about them."""
        ...


@runtime_checkable
class ReattachableAgent(Protocol):
    """An agent whose attempts outlive the scheduler (batch jobs) and can be picked up again."""

    def reattach(self, attempt_id: AttemptId, spec: TaskSpec, native_id: str) -> bool:
        """Track an attempt submitted by an earlier scheduler; False if the agent cannot.

        `native_id` is "" when that scheduler stopped between the submit call and journaling its answer:
        an agent that can find the attempt by its job name (batch sites) does so.
        """
        ...


@runtime_checkable
class SubmitsInBackground(Protocol):
    """An agent whose ``submit`` returns before the site has answered; the answers come with its polls.

    Batch sites: a server may take seconds per job, and the scheduler's step waits for no site.
    """

    def settle(self) -> None:
        """Wait until the site has answered every submission handed over."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRecord:
    """One pilot block of a site (a batch job holding Ray worker nodes), as its agent reports it."""

    block_id: str
    job_id: str
    state: str  # queued, running (its nodes joined), leaving (cancelled by metasched), ended
    nodes: int
    detail: str = ""
    # epoch seconds (None: not yet, or journaled before these were kept): submitted, its Ray nodes joined,
    # ended (for the report's Gantt rows of blocks)
    submitted_at: float | None = None
    joined_at: float | None = None
    ended_at: float | None = None


@runtime_checkable
class PoolAgent(Protocol):
    """An agent that runs attempts in blocks of its own (pilot mode); the scheduler journals them."""

    def blocks(self) -> list[BlockRecord]:
        """Every block this agent started and has not forgotten, newest last."""
        ...

    def forget_blocks(self, earlier: Sequence[BlockRecord]) -> None:
        """Blocks an earlier scheduler of this campaign journaled: delete the ones that may still be live."""
        ...


#: Pilot blocks submitted before the Ray head was up, by site name, with the head address they join.
AdoptedBlocks = dict[str, tuple[str, list[BlockRecord]]]


@runtime_checkable
class PrestartSite(Protocol):
    """A site whose agent can start work before the campaign's Ray head is up (``PrestartingAgent``)."""

    def prestarts(self) -> bool:
        """Whether this site has work to start before the head (pilot blocks that queue meanwhile)."""
        ...


@runtime_checkable
class PrestartingAgent(Protocol):
    """An agent that submits a site's first blocks while the campaign's Ray head starts.

    In the driver: ``prestart`` (before the head is up), then ``release`` (the scheduler's agent takes the
    blocks) or ``close`` (the campaign did not start: they are deleted). In the scheduler: ``adopt``
    before ``start``.
    """

    @property
    def name(self) -> SiteName:
        """The site's name."""
        ...

    def prestart(self, head: str) -> list[BlockRecord]:
        """Submit the first blocks, to join the head at `head` (host:port) once it is up."""
        ...

    def release(self) -> None:
        """Close without deleting the blocks: another agent of this site takes them."""
        ...

    def adopt(self, head: str, blocks: Sequence[BlockRecord]) -> None:
        """Before ``start``: blocks another agent submitted for the head at `head` (they are the first)."""
        ...

    def close(self) -> None:
        """Delete what it started (``SiteAgent.close``)."""
        ...
