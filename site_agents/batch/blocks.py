"""A pilot block: one batch job whose nodes each run a Ray worker node (``metasched.worker.pilot``).

A block is submitted as an ordinary command attempt of the site's ``BatchAgent``: its directory is an
attempt directory holding the pilot's plan and the Ray token (owner-only), its command runs the pilot with
the block's walltime, so every dialect submits, watches and deletes blocks as it does any job.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metasched.attempt_dir import AttemptDir
from metasched.errors import SiteAgentError
from metasched.outcomes import Cancelled, Failed, LossReason, Lost, Succeeded, TaskOutcome
from metasched.records import AttemptId, CommandSpec, Resources, TaskId, TaskKind, TaskSpec
from metasched.sites.base import AttemptUpdate, BlockRecord, Submission
from metasched.worker.pilot import PilotPlan, write_plan
from site_agents.batch.agent import BatchAgent
from site_agents.batch.config import BatchSite
from site_agents.batch.rounds import Deletions
from site_agents.batch.submitting import job_name

log = logging.getLogger(__name__)

LEAVE_EARLY_S = 30.0  # a pilot leaves this long before its block's walltime (an orderly end, not a kill)
MIN_SLICE_S = 30.0  # a cooperative task is handed to a block that leaves it this long before it must save


@dataclass(slots=True, kw_only=True)
class Block:
    """One pilot block as the agent follows it."""

    block_id: str
    submitted_at: float
    job_id: str = ""
    started_at: float | None = None  # the batch job runs
    joined_at: float | None = None  # its Ray node(s) are up
    nodes_up: int = 0
    idle_since: float = 0.0
    cancelling: bool = False
    ended: str = ""

    @property
    def takes_work(self) -> bool:
        """Its nodes joined and it is not leaving."""
        return self.joined_at is not None and self.nodes_up > 0 and not self.cancelling

    def record(self, state: str, detail: str = "", *, to_epoch: float) -> BlockRecord:
        """The block as the journal keeps it; `to_epoch` turns its monotonic times into epoch ones.

        The same offset each time, so the same block's records compare equal.
        """
        return BlockRecord(block_id=self.block_id, job_id=self.job_id, state=state, nodes=self.nodes_up,
                           detail=detail, submitted_at=self.submitted_at + to_epoch,
                           joined_at=None if self.joined_at is None else self.joined_at + to_epoch,
                           ended_at=time.time() if state == "ended" else None)

    def remaining_s(self, now: float, walltime: float) -> float:
        """Seconds before the block's pilots leave (the whole walltime while it waits)."""
        return self.leaves_at(now, walltime) - now

    def leaves_at(self, now: float, walltime: float) -> float:
        """When (monotonic) the block's pilots leave; if it started `now`, while it waits."""
        began = self.started_at if self.started_at is not None else now
        return began + walltime - LEAVE_EARLY_S


def block_submission(config: BatchSite, attempt: AttemptDir, *, head: str, number: int, cores_per_node: int,
                     pythonpath: str) -> Submission:
    """The block's directory `attempt` (plan and token written), and its job as a command attempt.

    Its nodes import metasched from `pythonpath` (the batch agent's, staged once when it started). The
    directory is the batch transport's: at a site over SSH, its local copy, sent there with the job.
    """
    block_id = attempt.attempt_id
    attempt.create()
    plan = PilotPlan(head=head, site=config.name, block=block_id, cores=cores_per_node,
                     gpus=config.gpus_per_node, object_store_mb=config.block_object_store_mb,
                     leave_after_s=config.block_walltime - LEAVE_EARLY_S)
    write_plan(attempt.here, plan, ray_token())
    return Submission(attempt_id=AttemptId(block_id), spec=block_spec(
        config, attempt, name=f"pilot block {number} of {config.name}", cores_per_node=cores_per_node,
        pythonpath=pythonpath))


def block_spec(config: BatchSite, attempt: AttemptDir, *, name: str, cores_per_node: int,
               pythonpath: str) -> TaskSpec:
    """The block's job as a command attempt: the pilot on the block's directory `attempt`."""
    command = CommandSpec(argv=(config.python, "-m", "metasched.worker.pilot", str(attempt.path)),
                          env=(("PYTHONPATH", pythonpath),))
    return TaskSpec(task_id=TaskId(attempt.attempt_id), name=name, kind=TaskKind.COMMAND, command=command,
                    resources=Resources(cores=cores_per_node, gpus=config.gpus_per_node,
                                        nodes=config.nodes_per_block, walltime_s=config.block_walltime))


def adopted(batch: BatchAgent, blocks: Sequence[BlockRecord], *, head: str, here: str, cores_per_node: int,
            to_epoch: float) -> list[Block]:
    """Blocks another agent of the site submitted (``PilotAgent.prestart``), followed by `batch` now.

    They join a Ray head at `head`; if the campaign's head listens elsewhere (`here`), they would never
    join it and are deleted instead. `to_epoch`: the offset of the monotonic clock they are followed by.
    """
    if blocks and here != head:
        log.warning("site %s: pilot blocks submitted for a head at %s, but it listens at %s: deleted",
                    batch.config.name, head, here)
        delete_earlier(batch, blocks)
        return []
    taken = []
    for record in blocks:
        attempt = batch.transport.attempt(record.block_id)
        spec = block_spec(batch.config, attempt, name=f"pilot block of {batch.config.name}",
                          cores_per_node=cores_per_node, pythonpath=batch.pythonpath)
        if batch.reattach(AttemptId(record.block_id), spec, record.job_id):
            submitted = (record.submitted_at or time.time()) - to_epoch
            taken.append(Block(block_id=record.block_id, job_id=record.job_id, submitted_at=submitted))
    return taken


def time_needed(spec: TaskSpec, lead_s: float) -> float:
    """How long a block must still run to be handed the task: its walltime (0 if unknown).

    A checkpointable task (cooperative or CRIU) needs at most ``MIN_SLICE_S`` and `lead_s`: it saves and
    stops `lead_s` before the block ends, and goes on from there in its next attempt.
    """
    need = spec.resources.walltime_s or 0.0
    if spec.checkpoint is not None:
        return min(need or math.inf, lead_s + MIN_SLICE_S)
    return need


def pilot_problem(site: str, head: str, other_user: str) -> str:
    """Why a site cannot run pilots that join the Ray head at `head` ("" if it can).

    `other_user`: who the site's commands run as, if not this process's user (a login as another user).
    """
    if head.rsplit(":", 1)[0] in ("127.0.0.1", "localhost"):
        return (f"pilot site {site}: the campaign's Ray head listens on 127.0.0.1 only, so no pilot can join "
                "it. Start the campaign with ray_node_ip= (the address the compute nodes reach this machine "
                "at; see docs/pilots.md), or join a Ray cluster whose head they reach (address=).")
    if other_user:
        return (f"pilot site {site}: its commands run as {other_user!r}, not as this process's user; a pilot "
                "reads the campaign's Ray token from its block directory, and only this user may read it "
                "(never a group). Use batch mode there, or a login that runs the commands as this user.")
    return ""


def delete_earlier(batch: BatchAgent, earlier: Sequence[BlockRecord]) -> list[BlockRecord]:
    """Delete the blocks an earlier scheduler left (by job id and by name); their records, all ended."""
    live, site = [r for r in earlier if r.state != "ended"], batch.config.name
    try:
        deletions = Deletions(ids=[r.job_id for r in live if r.job_id],
                              names=[job_name(site, r.block_id) for r in live])
        deletions.run(batch.dialect, batch.runner.run, batch.user)
    except SiteAgentError as exc:
        log.warning("site %s: could not delete an earlier scheduler's blocks: %s", site, exc)
    gone = [dataclasses.replace(r, state="ended", detail="deleted when the campaign resumed") for r in live]
    return [r for r in earlier if r.state == "ended"] + gone


Suspect = tuple[float, str, AttemptUpdate]  # until when its block may be seen to go, the block, the news


def judge(suspects: Sequence[Suspect], live: Mapping[str, Block], config: BatchSite,
          now: float) -> tuple[list[AttemptUpdate], list[Suspect]]:
    """Attempts whose Ray worker died (lost): the block's fault, or the task's; and those not yet known.

    The block's (lost at no cost) if its node went, or the block ended, before the suspect's deadline: Ray
    may see a worker die before it sees the node go. Else, once the deadline passed, the task's: its retry
    is charged.
    """
    judged: list[AttemptUpdate] = []
    waiting: list[Suspect] = []
    for deadline, block_id, update in suspects:
        block = live.get(block_id)
        assert isinstance(update.outcome, Lost)  # noqa: S101  (only such updates are suspects)
        if block is None or block.nodes_up < config.nodes_per_block:
            lost = Lost(reason=LossReason.BLOCK_ENDED, charge_retry=False,
                        detail=f"site {config.name}: {update.outcome.detail}")
            judged.append(AttemptUpdate(attempt_id=update.attempt_id, outcome=lost))
        elif now >= deadline:
            judged.append(update)
        else:
            waiting.append((deadline, block_id, update))
    return judged, waiting


def nodes_up(nodes: Sequence[dict[str, Any]]) -> collections.Counter[str]:
    """How many live Ray nodes each block has, from Ray's node table (``ray.nodes()``)."""
    up: collections.Counter[str] = collections.Counter()
    for node in nodes:
        if node.get("Alive"):
            up.update(r.removeprefix("block:") for r in node.get("Resources", {}) if r.startswith("block:"))
    return up


def never_joined(site: str, head: str, blocks: Sequence[str]) -> str:
    """Why the queued attempts fail: these blocks in a row ended without joining the head at `head`."""
    return (f"site {site}: {len(blocks)} pilot blocks in a row ended without joining the campaign's Ray head "
            f"at {head} ({'; '.join(blocks)}). Check that the compute nodes reach that address, and that "
            "`python` there has this Ray version (see docs/pilots.md).")


def ending(outcome: TaskOutcome) -> str:
    """How a block's job ended, in words."""
    match outcome:
        case Succeeded():
            return "ended"
        case Cancelled():
            return "was cancelled"
        case Lost(detail=detail):
            return f"was lost ({detail})"
        case Failed(failure=failure):
            return f"failed ({failure.error_type}: {failure.message})"
    return f"ended ({type(outcome).__name__})"


def pilot_lines(attempt: AttemptDir, lines: int = 8) -> str:
    """The last lines the pilot printed (ray start's own errors), for a block that never joined."""
    said = attempt.command_output_tail(4000)
    text = "\n".join(s for s in said if s).strip().splitlines()[-lines:]
    return " | ".join(text) or "no output"


def ray_token() -> str:
    """The head's token, where Ray looks for it: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SiteAgentError(f"pilot blocks need the Ray head's token, and {path} cannot be read ({exc}); "
                             "token authentication stays on.", site="") from exc
