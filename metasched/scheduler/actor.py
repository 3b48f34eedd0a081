"""The thin Ray actor around ``SchedulerService``: a named, async actor that owns the scheduling loop.

All work on the service runs on one dedicated thread (so the service needs no locks and blocking site
calls never stall the actor's event loop); the event loop serves submissions, cancellations, status
queries and the drivers' long polls for finished tasks. The actor is named
``metasched.<campaign>`` in the Ray namespace ``metasched``, so a CLI process can find a live campaign.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Sequence
from typing import Any

from metasched.data import DataSettings, site_store
from metasched.data.plane import DataPlane
from metasched.data.transfers import RayTransferRunner
from metasched.journal import Journal
from metasched.placement import DefaultPolicy, PlacementPolicy, RoundRobinPolicy, as_policy
from metasched.records import SiteName, TaskId, TaskSpec
from metasched.scheduler.events import SiteSummary, TaskEvent
from metasched.scheduler.service import SchedulerService
from metasched.sites.base import AdoptedBlocks, PrestartingAgent
from metasched.sites.registry import agent_for

NAMESPACE = "metasched"


def actor_name(campaign: str) -> str:
    """The Ray actor name of a campaign's scheduler."""
    return f"metasched.{campaign}"


class SchedulerActor:
    """Wrapped with ``ray.remote`` by the campaign; see the module docstring."""

    def __init__(self, *, journal_path: str, sites: Sequence[Any], policy: str | PlacementPolicy,
                 resume: bool, data: DataSettings | None = None,
                 adopted: AdoptedBlocks | None = None) -> None:
        # Site agents call ray.get/ray.wait on the scheduler thread, never on the event loop; Ray's
        # warning about blocking calls in async actors does not apply.
        os.environ["RAY_WARN_BLOCKING_GET_INSIDE_ASYNC"] = "0"
        self._journal_path = journal_path
        self._sites = list(sites)
        self._policy = policy
        self._resume = resume
        self._data = data
        self._adopted = dict(adopted or {})  # pilot blocks the driver submitted, by site (metasched.prestart)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                             thread_name_prefix="metasched-scheduler")
        self._service: SchedulerService | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._new_events = asyncio.Event()
        self._work = asyncio.Event()  # new tasks or requests: the loop's pause ends at once
        self._closing = False
        self._loop_error: BaseException | None = None

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @property
    def service(self) -> SchedulerService:
        """The running service."""
        if self._service is None:
            raise RuntimeError("the scheduler has not been started")
        return self._service

    async def start(self) -> int:
        """Open the journal, start the agents, restore state if resuming, and start the loop."""
        def _start() -> tuple[SchedulerService, int]:
            journal = Journal(self._journal_path).open()
            journal.set_meta("sites", self._sites)
            if isinstance(self._policy, str | DefaultPolicy | RoundRobinPolicy):  # another class may not
                journal.set_meta("policy", self._policy)  # be importable at resume
            plane = None
            if self._data is not None:
                journal.set_meta("data", self._data)
                stores = {SiteName(s.name): site_store(s, self._data.home) for s in self._sites}
                plane = DataPlane(self._data, stores, RayTransferRunner())
            agents = [agent_for(s) for s in self._sites]
            for agent in agents:
                if isinstance(agent, PrestartingAgent) and agent.name in self._adopted:
                    agent.adopt(*self._adopted[agent.name])
            service = SchedulerService(journal=journal, agents=agents, policy=as_policy(self._policy),
                                       data=plane)
            restored = service.start(resume=self._resume)
            return service, restored

        self._service, restored = await self._call(_start)
        self._loop_task = asyncio.get_running_loop().create_task(self._run())
        return int(restored)

    async def _run(self) -> None:
        service = self.service
        try:
            while not self._closing:
                self._work.clear()  # before the step: work arriving during it is not slept over
                changed = await self._call(service.step)
                if changed:
                    self._new_events.set()
                    await asyncio.sleep(0)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._work.wait(), await self._call(service.pause_hint))
        except BaseException as exc:  # surfaced to the driver through events()
            self._loop_error = exc
            self._new_events.set()
            raise

    async def submit(self, specs: list[TaskSpec], functions: dict[str, bytes]) -> dict[TaskId, str]:
        """Accept tasks (journaled before this returns); returns refused task ids with why."""
        refused: dict[TaskId, str] = await self._call(self.service.submit, specs, functions)
        self._new_events.set()
        self._work.set()  # place them now, not after the loop's pause
        return refused

    async def events(self, cursor: int, timeout: float) -> tuple[int, list[TaskEvent]]:
        """Long poll: terminal events after `cursor`, waiting up to `timeout` seconds for some."""
        if self._loop_error is not None:
            raise self._loop_error
        self._new_events.clear()  # before looking, so a step finishing meanwhile wakes us
        new_cursor, events = await self._call(self.service.events_since, cursor)
        if events:
            return new_cursor, events
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new_events.wait(), timeout)
        if self._loop_error is not None:
            raise self._loop_error
        result: tuple[int, list[TaskEvent]] = await self._call(self.service.events_since, cursor)
        return result

    async def cancel(self, task_ids: list[TaskId]) -> int:
        """Cancel tasks; returns how many were still unfinished."""
        count: int = await self._call(self.service.cancel, task_ids)
        self._new_events.set()
        return count

    async def drain(self, site: str, undo: bool) -> str:
        """Stop placing work at a site and move its checkpointable tasks away (or take work again)."""
        message: str = await self._call(lambda: self.service.drain(SiteName(site), undo=undo))
        self._new_events.set()
        return message

    async def checkpoint(self, task_id: TaskId) -> str:
        """Take a restart point of a running CRIU task (ConfigurationError says why not)."""
        message: str = await self._call(self.service.checkpoint, task_id)
        return message

    async def migrate(self, task_id: TaskId, site: str) -> str:
        """Checkpoint a running task and continue it at `site` (ConfigurationError says why not)."""
        message: str = await self._call(self.service.migrate, task_id, SiteName(site))
        self._new_events.set()
        return message

    async def summary(self) -> list[SiteSummary]:
        """Per-site task counts."""
        rows: list[SiteSummary] = await self._call(self.service.summary)
        return rows

    async def peak_memory_mb(self) -> float:
        """This scheduler process's peak resident memory so far (MB), for memory tests and benchmarks."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def close(self) -> None:
        """Stop the loop, close the agents (cancelling what runs) and the journal."""
        self._closing = True
        if self._loop_task is not None:
            with contextlib.suppress(Exception):  # already reported through events()
                await self._loop_task
        if self._service is not None:
            await self._call(self._service.close)
            if self._service.data is not None:  # made here: its transfer worker and connections
                await self._call(self._service.data.close)
        self._thread.shutdown(wait=True)
