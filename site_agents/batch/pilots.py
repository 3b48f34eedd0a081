"""Pilot mode of a batch site: Ray worker nodes inside elastic blocks of batch jobs.

A **block** is one batch job of ``nodes_per_block`` nodes and ``block_walltime``: on each node
``metasched.worker.pilot`` starts a Ray worker node that joins the campaign's Ray head with the resources
``site:<name>`` and ``block:<id>``. Blocks are ordinary command attempts of the site's ``BatchAgent`` (its
dialect, job scripts, status rounds, vanished and held jobs, deletion at close), so every batch site kind
gets pilots without code of its own. The campaign's attempts then run as Ray tasks (``RayTasks``) asking
for ``block:<id>``: the agent keeps them in its own queue and hands each to a block that has room and
enough time left for the task's walltime, so Ray never holds more than a block can start soon and the
rest stays where placement can still send it elsewhere.

Elastic: ``init_blocks`` at start; more while the queued and running work needs them (up to
``max_blocks``); a block that ran nothing for ``idle_timeout`` is cancelled, down to ``min_blocks``. A
block that ends (cancelled, its walltime, a node lost) returns its running attempts as lost at no cost to
their retries; a cooperative attempt saves and stops ``signal_lead_s`` before its block ends, and goes on
from there wherever it is placed next. A block whose pilot never joins the head (unreachable head, wrong
Python or Ray) ends with the pilot's own lines; after ``GIVE_UP_AFTER`` such blocks in a row, the queued
attempts fail with them.
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any

from metasched.errors import SiteAgentError
from metasched.outcomes import Cancelled, LossReason, Lost, TaskOutcome, failed
from metasched.records import AttemptId, Capability, SiteLoad, SiteName, TaskSpec
from metasched.sites.base import AttemptUpdate, BlockRecord, Submission
from site_agents.batch import explain
from site_agents.batch.agent import BatchAgent
from site_agents.batch.block_scripts import BlockScripts, scripted
from site_agents.batch.blocks import (
    LEAVE_EARLY_S,
    Block,
    adopted,
    block_submission,
    delete_earlier,
    ending,
    judge,
    never_joined,
    nodes_up,
    pilot_lines,
    pilot_problem,
    time_needed,
)
from site_agents.ray_tasks import MAX_DEPTH, RayTasks, depth

log = logging.getLogger(__name__)

OVERSUBSCRIBE = 2  # attempts handed to a block per core at least (the next start without waiting for a poll)
BACKLOG_S = 2.0  # the work a block is handed ahead, in seconds at the recent mean run time
MAX_PACK = 32  # the most short function attempts sharing one Ray task
MIN_WINDOW = 256  # attempts the scheduler may hand the agent ahead, at least
NODES_REFRESH_S = 1.0  # how often the Ray node table is read
JOINING_REFRESH_S = 0.2  # ... while a block's job runs but its nodes have not joined (work waits for them)
MAX_HISTORY = 200  # ended blocks kept in the journal's record
NODE_DEATH_GRACE_S = 10.0  # how long a dead worker's node may still look alive to Ray
GIVE_UP_AFTER = 2  # blocks in a row that never joined before the queued attempts fail with their words
DEFAULT_BLOCK_WAIT_S = 30.0  # predicted wait for a new block before one has started


class PilotAgent:
    """Runs attempts as Ray tasks in pilot blocks that a ``BatchAgent`` submits and watches."""

    def __init__(self, batch: BatchAgent) -> None:
        self.config = batch.config
        self.batch = batch
        self._tasks: RayTasks | None = None
        self._scripts: BlockScripts | None = None  # container and CRIU attempts (after start)
        self._ray: Any = None
        self._head = ""
        self._run = secrets.token_hex(3)
        self._count = 0
        self._live: dict[str, Block] = {}
        self._queue: collections.deque[Submission] = collections.deque()
        self._cores: dict[AttemptId, int] = {}
        self._where: dict[AttemptId, str] = {}
        self._pending: list[AttemptUpdate] = []
        self._nodes_read = 0.0
        self._never_joined: list[str] = []
        self._block_waits: list[float] = []
        self._history: list[BlockRecord] = []  # blocks that ended (and an earlier scheduler's)
        self._suspects: list[tuple[float, str, AttemptUpdate]] = []  # worker died: whose fault?
        self._to_epoch = time.time() - time.monotonic()  # once: a record's times must not jitter by call
        self.cores_per_node: int = batch.config.cores_per_node
        self._adopted: tuple[str, list[BlockRecord]] = ("", [])  # the driver's first blocks, for its head

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    @property
    def block_cores(self) -> int:
        """Cores of one block (every node's)."""
        return self.cores_per_node * self.config.nodes_per_block

    @property
    def tasks(self) -> RayTasks:
        """The attempts in flight as Ray tasks (after start)."""
        if self._tasks is None:
            raise SiteAgentError(f"site {self.config.name}: agent not started.", site=self.config.name)
        return self._tasks

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the batch side, check the head can be joined, and submit the first blocks (or adopt them)."""
        import ray

        self._ray = ray
        self._start_batch(ray.get_runtime_context().gcs_address)
        self._tasks = RayTasks(ray, site=self.config.name, lead_s=self.config.signal_lead_s)
        self._scripts = BlockScripts(self.batch, self._tasks, ray)
        head, blocks = self._adopted
        first = adopted(self.batch, blocks, head=head, here=self._head, cores_per_node=self.cores_per_node,
                        to_epoch=self._to_epoch)
        self._live.update((b.block_id, b) for b in first)
        self._add_blocks(self.config.init_blocks - len(first))

    def _start_batch(self, head: str) -> None:
        self._head = head
        self.batch.start()
        problem = pilot_problem(self.config.name, head, self.batch.user if self.batch.via_group else "")
        if problem:
            self.batch.close()
            raise SiteAgentError(problem, site=self.config.name)
        if not self.cores_per_node:
            self.cores_per_node = self.batch.capacity.max_cores_per_node

    def prestart(self, head: str) -> list[BlockRecord]:
        """In the driver, while the Ray head starts: submit the first blocks, to join it at `head`."""
        self._start_batch(head)
        self._add_blocks(self.config.init_blocks, wait=True)  # their ids go to the scheduler's agent
        for block in self._live.values():
            block.job_id = self.batch.job_id(AttemptId(block.block_id))
        return [b for b in self.blocks() if b.job_id]  # refused ones: the scheduler's agent tries again

    def release(self) -> None:
        """Leave the blocks to the scheduler's agent (``adopt``): close without deleting them."""
        self._live.clear()
        self.batch.close(delete=False)

    def adopt(self, head: str, blocks: Sequence[BlockRecord]) -> None:
        """Before start: blocks the driver submitted (``prestart``) for the head at `head`."""
        self._adopted = (head, list(blocks))

    def close(self) -> None:
        """Cancel the attempts in flight and delete every block."""
        if self._tasks is not None:
            self._tasks.close()
        self.batch.close()
        closed = [b.record("ended", "deleted when the campaign closed", to_epoch=self._to_epoch)
                  for b in self._live.values()]
        self._history = [*self._history, *closed][-MAX_HISTORY:]
        self._live.clear()

    # ------------------------------------------------------------------------------ blocks
    def _add_blocks(self, count: int, *, wait: bool = False) -> None:
        """Submit `count` blocks; their ids (or refusals) come with the batch side's polls (`wait`: now)."""
        submissions = [self._block_submission() for _ in range(count)]
        if submissions:
            self.batch.submit(submissions, wait=wait)

    def _block_submission(self) -> Submission:
        self._count += 1
        block_id = f"pilot-{self._run}-{self._count}"
        self._live[block_id] = Block(block_id=block_id, submitted_at=time.monotonic())
        log.info("site %s: pilot block %s submitted", self.config.name, block_id)
        return block_submission(self.config, self.batch.transport.attempt(block_id), head=self._head,
                                number=self._count, cores_per_node=self.cores_per_node,
                                pythonpath=self.batch.pythonpath)

    def _follow_blocks(self, now: float) -> None:
        """The batch side's news about the block jobs, then the Ray node table."""
        for update in self.batch.poll():
            block = self._live.get(update.attempt_id)
            if block is None:
                continue
            if update.native_id:
                block.job_id = update.native_id
            if update.running and block.started_at is None:
                block.started_at = now
            if update.outcome is not None:
                self._ended(block, update.outcome)
        joining = any(b.started_at is not None and b.joined_at is None for b in self._live.values())
        if now - self._nodes_read >= (JOINING_REFRESH_S if joining else NODES_REFRESH_S):
            self._read_nodes(now)

    def _read_nodes(self, now: float) -> None:
        self._nodes_read = now
        up = nodes_up(self._ray.nodes())
        for block in list(self._live.values()):
            was = block.nodes_up
            block.nodes_up = up.get(block.block_id, 0)
            if block.nodes_up and block.joined_at is None:
                block.joined_at = block.idle_since = now
                block.started_at = block.started_at or now
                self._block_waits.append(now - block.submitted_at)
                self.tasks.warm({f"block:{block.block_id}": 1.0}, self.cores_per_node * block.nodes_up)
                self._never_joined.clear()
                log.info("site %s: pilot block %s (job %s) joined with %d node(s)", self.config.name,
                         block.block_id, block.job_id, block.nodes_up)
            elif was and block.nodes_up < was:
                self._lose(block, f"pilot block {block.block_id} (job {block.job_id}) lost "
                                  f"{was - block.nodes_up} of its Ray nodes")

    def _ended(self, block: Block, outcome: TaskOutcome) -> None:
        del self._live[block.block_id]
        why = ending(outcome)
        self._history = [*self._history[1 - MAX_HISTORY:],
                         block.record("ended", why, to_epoch=self._to_epoch)]
        if block.joined_at is None and not block.cancelling:
            said = pilot_lines(self.batch.transport.attempt(block.block_id))
            self._never_joined.append(f"block {block.block_id} (job {block.job_id}) {why}: {said}")
            log.warning("site %s: pilot %s", self.config.name, self._never_joined[-1])
            if len(self._never_joined) >= GIVE_UP_AFTER:
                self._fail_queue()
        self._lose(block, f"pilot block {block.block_id} (job {block.job_id}) {why}")

    def _lose(self, block: Block, detail: str) -> None:
        lost = Lost(reason=LossReason.BLOCK_ENDED, detail=f"site {self.config.name}: {detail}",
                    charge_retry=False)
        if self.tasks.lose_group(block.block_id, lost):
            log.warning("site %s: %s; its running tasks are placed again", self.config.name, detail)

    def _fail_queue(self) -> None:
        message = never_joined(self.config.name, self._head, self._never_joined[-GIVE_UP_AFTER:])
        while self._queue:
            sub = self._queue.popleft()
            self._cores.pop(sub.attempt_id, None)
            outcome = failed("PilotError", message)
            self._pending.append(AttemptUpdate(attempt_id=sub.attempt_id, outcome=outcome))
        self._never_joined.clear()

    def blocks(self) -> list[BlockRecord]:
        """Every block: the ended ones (the last MAX_HISTORY), then the live ones."""
        live = [b.record("leaving" if b.cancelling else "running" if b.joined_at else "queued",
                         to_epoch=self._to_epoch) for b in self._live.values()]
        return [*self._history, *live]

    def forget_blocks(self, earlier: Sequence[BlockRecord]) -> None:
        """Delete the blocks an earlier scheduler left (their head is gone); keep their records."""
        self._history = delete_earlier(self.batch, earlier)

    def _scale(self, now: float) -> None:
        """More blocks while the work needs them (or time the live ones lack); idle ones cancelled."""
        walltime = self.config.block_walltime
        first = time_needed(self._queue[0].spec, self.config.signal_lead_s) if self._queue else 0.0
        useful = [b for b in self._live.values()
                  if not b.cancelling and b.remaining_s(now, walltime) > max(10.0, 0.1 * walltime, first)]
        demand = sum(self._cores.values())
        wanted = min(self.config.max_blocks, max(self.config.min_blocks,
                                                 math.ceil(demand / max(1, self.block_cores))))
        alive = [b for b in self._live.values() if not b.cancelling]
        if self._queue and len(useful) < wanted and len(alive) < self.config.max_blocks:
            self._add_blocks(min(wanted - len(useful), self.config.max_blocks - len(alive)))
        idle = [b for b in alive if b.joined_at is not None and not self.tasks.in_group(b.block_id)
                and now - b.idle_since >= self.config.idle_timeout]
        for block in idle[:max(0, len(alive) - self.config.min_blocks)] if not self._queue else []:
            block.cancelling = True
            log.info("site %s: pilot block %s idle for %.0f s: cancelled", self.config.name, block.block_id,
                     now - block.idle_since)
            self.batch.cancel([AttemptId(block.block_id)])

    # ------------------------------------------------------------------------------ attempts
    def submit(self, submissions: Sequence[Submission]) -> None:
        """Queue the attempts; each poll hands them to blocks with room and time for them."""
        for sub in submissions:
            self._queue.append(sub)
            self._cores[sub.attempt_id] = sub.spec.resources.cores

    def poll(self) -> list[AttemptUpdate]:
        """Blocks first (ended ones give back their tasks), then finished attempts, then dispatch."""
        now = time.monotonic()
        self._follow_blocks(now)
        updates, self._pending = self._pending, []
        for update in self.tasks.poll():
            if update.outcome is None:  # a restart point: the attempt runs on
                updates.append(update)
                continue
            self._cores.pop(update.attempt_id, None)
            block_id = self._where.pop(update.attempt_id, "")
            block = self._live.get(block_id)
            if block is not None:
                block.idle_since = now  # idle_timeout counts from its last task's end
            if isinstance(update.outcome, Lost) and update.outcome.reason is LossReason.WORKER_DIED:
                self._suspects.append((now + NODE_DEATH_GRACE_S, block_id, update))
            else:
                updates.append(update)
        updates += self._judge(now) + (self._scripts.progress() if self._scripts else [])
        updates += self._dispatch(now)
        self._scale(now)
        return updates

    def _judge(self, now: float) -> list[AttemptUpdate]:
        """Attempts whose Ray worker died: the block's fault, or the task's (``blocks.judge``)."""
        if not self._suspects:
            return []
        self._read_nodes(now)
        judged, self._suspects = judge(self._suspects, self._live, self.config, now)
        return judged

    def _dispatch(self, now: float) -> list[AttemptUpdate]:
        """Hand queued attempts to blocks with room and time for them (the rest keep their place)."""
        ready = [b for b in self._live.values() if b.takes_work]
        if not ready or not self._queue:
            return []
        room = {b.block_id: self._room(b) for b in ready}
        chosen: dict[str, list[Submission]] = collections.defaultdict(list)
        waiting: collections.deque[Submission] = collections.deque()
        while self._queue and max(room.values()) > 0:
            sub = self._queue.popleft()
            block = self._block_for(sub.spec, ready, room, now)
            if block is None:
                waiting.append(sub)
                continue
            room[block.block_id] -= sub.spec.resources.cores
            chosen[block.block_id].append(sub)
        waiting.extend(self._queue)
        self._queue = waiting
        started: list[AttemptUpdate] = []
        for block in ready:
            if chosen.get(block.block_id):
                block.idle_since = now
                started += self._start(block, chosen[block.block_id], now)
        return started

    def _start(self, block: Block, subs: list[Submission], now: float) -> list[AttemptUpdate]:
        """Ray tasks in `block` for these attempts (short functions packed; containers, CRIU: scripts)."""
        for sub in subs:
            self._where[sub.attempt_id] = block.block_id
        lead = self.config.signal_lead_s
        stop_at = block.leaves_at(now, self.config.block_walltime) - lead + self._to_epoch
        self.tasks.start([s for s in subs if not scripted(s.spec)], f"block:{block.block_id}",
                         cores=self.cores_per_node * block.nodes_up, max_pack=MAX_PACK, group=block.block_id,
                         stop_at=stop_at)
        assert self._scripts is not None  # noqa: S101  (made with the tasks, at start)
        refused = self._scripts.start(block.block_id, [s for s in subs if scripted(s.spec)], stop_at=stop_at)
        for update in refused:
            self._where.pop(update.attempt_id, None)
            self._cores.pop(update.attempt_id, None)
        started = {s.attempt_id for s in subs} - {u.attempt_id for u in refused}
        return [*refused, *(AttemptUpdate(attempt_id=a, running=True, native_id=block.job_id)
                            for a in started)]

    def _block_for(self, spec: TaskSpec, ready: list[Block], room: dict[str, int],
                   now: float) -> Block | None:
        """The block with the most room that has the task's cores free and time left for it."""
        need = time_needed(spec, self.config.signal_lead_s)
        fits = [b for b in ready if room[b.block_id] >= spec.resources.cores
                and b.remaining_s(now, self.config.block_walltime) >= need]
        return max(fits, key=lambda b: room[b.block_id], default=None)

    def _room(self, block: Block) -> int:
        """Cores' worth of attempts the block may still be handed.

        Enough to keep it busy for ``BACKLOG_S`` at the recent mean run time (at least OVERSUBSCRIBE and at
        most MAX_DEPTH per core), so short tasks stream through Ray while long ones stay in the agent's
        queue, where a later block (or another site) can still take them.
        """
        used = sum(self._cores.get(a, 1) for a, b in self._where.items() if b == block.block_id)
        per_core = depth(self.tasks.mean_run_s, backlog_s=BACKLOG_S, least=OVERSUBSCRIBE)
        return int(per_core * self.cores_per_node * block.nodes_up) - used

    def checkpoint(self, attempt_ids: Sequence[AttemptId], *, stop: bool = True) -> list[AttemptId]:
        """Cooperative attempts stop at their next save; CRIU ones checkpoint (and stop, or go on)."""
        if self._scripts is None:  # not started
            return []
        asked = self.tasks.ask_stop(attempt_ids) if stop else []
        return [*asked, *self._scripts.checkpoint(attempt_ids, stop=stop)]

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Queued attempts end at once; running ones are force-cancelled in Ray."""
        wanted = set(attempt_ids)
        kept: collections.deque[Submission] = collections.deque()
        for sub in self._queue:
            if sub.attempt_id in wanted:
                self._cores.pop(sub.attempt_id, None)
                cancelled = Cancelled(detail="cancelled while queued for a pilot block")
                self._pending.append(AttemptUpdate(attempt_id=sub.attempt_id, outcome=cancelled))
            else:
                kept.append(sub)
        self._queue = kept
        self.tasks.cancel([a for a in attempt_ids if a in self._where])

    # ------------------------------------------------------------------------------ load
    def load(self) -> SiteLoad:
        """A window as deep as max_blocks take; no wait of its own while blocks take work, else a block's.

        A block's wait: recent blocks' waits; before any, the batch site's forecast for a job (at least
        30 s). Our attempts queue for the joined blocks' cores (``SiteLoad.wait_s``), each holding one for
        the recent mean run time.
        """
        joined = sum(self.cores_per_node * b.nodes_up for b in self._live.values() if b.takes_work)
        waits = self._block_waits[-5:]
        first = max(DEFAULT_BLOCK_WAIT_S, self.batch.waits.est_wait_s)  # no block has started yet
        wait = 0.0 if joined else (sum(waits) / len(waits) if waits else first)
        inflight = len(self._cores)  # queued here and in blocks
        limit = max(MIN_WINDOW, MAX_DEPTH * self.block_cores * self.config.max_blocks)
        return SiteLoad(
            site=self.name, total_cores=self.block_cores * self.config.max_blocks,
            max_cores_per_task=self.cores_per_node, max_memory_mb=self.batch.capacity.max_memory_mb,
            gpus=self.config.gpus_per_node, nodes=1, inflight=inflight,
            max_inflight=limit if self.batch.available else inflight, est_wait_s=wait,
            open_cores=joined or self.block_cores * self.config.max_blocks,
            cycle_s=self.tasks.mean_run_s or 0.0, accepting=self.batch.available,
            problem="" if self.batch.available else explain.not_taking_work(self.batch.unavailable_reason),
            max_walltime_s=self.config.block_walltime - LEAVE_EARLY_S, reports_start=True,
            capabilities=frozenset({Capability.CHECKPOINT_COOPERATIVE,
                                    *(self._scripts.capabilities if self._scripts else ())}))
