"""Pilot blocks submitted while the campaign's Ray head starts (the driver's side).

Starting the embedded head takes seconds (3-4 s on a loaded machine), and a pilot block takes seconds more
to queue, start and join. Both at once: the head's address is fixed first (``runtime.joinable_head``:
its token, a free GCS port), each pilot site's agent submits its first blocks from a thread of the
driver (``PrestartingAgent.prestart``) while ``ray.init`` runs, and the pilots wait for the head to answer
before joining (``metasched.worker.pilot``). The scheduler's agents then adopt those blocks
(``PrestartingAgent.adopt``) instead of submitting their own; the driver's agents are released without
deleting them. Blocks the site refused are left to its scheduler's agent (which reports why). A site that
could not be started here fails the campaign's start once the head is up, with the site's own error: its
scheduler's agent would run the same checks moments later and wait for the site a second time. If the
campaign does not start, every block submitted here is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from metasched.errors import MetaschedError, SiteAgentError
from metasched.runtime import joinable_head
from metasched.sites.base import AdoptedBlocks, BlockRecord, PrestartingAgent, PrestartSite
from metasched.sites.registry import agent_for

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Prestart:
    """The first blocks of the campaign's pilot sites, being submitted for the head at `head`."""

    head: str
    agents: dict[str, PrestartingAgent]
    pool: ThreadPoolExecutor
    submitted: dict[str, Future[list[BlockRecord]]]

    @property
    def port(self) -> int:
        """The head's GCS port (``init_embedded_ray(gcs_port=...)``)."""
        return int(self.head.rsplit(":", 1)[1])

    def blocks(self) -> AdoptedBlocks:
        """Once submitted: each site's blocks, for its scheduler's agent to adopt.

        Raises the first site's error if a site could not be started (the caller then ``abandon``s the
        other sites' blocks).
        """
        adopted: AdoptedBlocks = {}
        failed: MetaschedError | None = None
        for name, future in self.submitted.items():
            try:
                adopted[name] = (self.head, future.result())
            except MetaschedError as exc:
                failed = failed or exc
            except OSError as exc:
                failed = failed or SiteAgentError(f"site {name}: could not submit the first pilot blocks: "
                                                  f"{exc}", site=name)
        self.pool.shutdown()
        if failed is not None:
            raise failed
        return adopted

    def release(self) -> None:
        """The scheduler's agents have the blocks: close the driver's agents without deleting them."""
        for agent in self.agents.values():
            agent.release()

    def abandon(self) -> None:
        """The campaign did not start: delete every block submitted here."""
        self.pool.shutdown(wait=True)
        for agent in self.agents.values():
            _close(agent)


def _close(agent: PrestartingAgent) -> None:
    """Close a driver's agent, deleting its blocks; a site that does not answer is logged, not raised."""
    try:
        agent.close()
    except MetaschedError as exc:
        log.warning("site %s: could not delete pilot blocks submitted before the Ray head: %s", agent.name,
                    exc)


def prestart(sites: Sequence[Any], node_ip: str | None) -> Prestart | None:
    """Start submitting the pilot sites' first blocks, if any site has some and the head's address is known.

    Not with `node_ip` None (no head other nodes can join) or "auto" (Ray detects the address as it
    starts): their agents submit the blocks once the head is up, as before.
    """
    wanted = [s for s in sites if isinstance(s, PrestartSite) and s.prestarts()]
    if not wanted or node_ip is None or node_ip == "auto":
        return None
    head = joinable_head(node_ip)
    agents: dict[str, PrestartingAgent] = {}
    for site in wanted:
        agent = agent_for(site)
        if isinstance(agent, PrestartingAgent):
            agents[agent.name] = agent
    pool = ThreadPoolExecutor(max_workers=len(agents) or 1, thread_name_prefix="metasched-prestart")
    submitted = {name: pool.submit(agent.prestart, head) for name, agent in agents.items()}
    return Prestart(head, agents, pool, submitted)
