"""The journal's record of pilot blocks: each site's blocks whenever they change, read back on resume.

Blocks are journaled as the meta value ``blocks:<site>`` (a list of ``BlockRecord``), so ``metasched
status`` shows them and a resumed campaign can delete the blocks its crashed scheduler left queued or
running: their Ray nodes were joined to a head that died with it, so they can run nothing for the new one
(each pilot also leaves by itself once its node loses the head).
"""

from __future__ import annotations

from collections.abc import Iterable

from metasched.journal import Journal
from metasched.sites.base import BlockRecord, PoolAgent, SiteAgent


def key(site: str) -> str:
    """The journal meta key of a site's blocks."""
    return f"blocks:{site}"


class BlockJournal:
    """Writes each pool agent's blocks when they change."""

    def __init__(self, journal: Journal, agents: Iterable[SiteAgent]) -> None:
        self.journal = journal
        self.pools = {agent.name: agent for agent in agents if isinstance(agent, PoolAgent)}
        self._last: dict[str, list[BlockRecord]] = {}

    def resume(self) -> None:
        """Hand each pool agent the blocks an earlier scheduler journaled (before the agents start)."""
        for site, agent in self.pools.items():
            earlier: list[BlockRecord] = self.journal.get_meta(key(site)) or []
            if earlier:
                agent.forget_blocks(earlier)
            self._last[site] = earlier

    def record(self) -> None:
        """Journal the blocks of every pool agent whose blocks changed since the last call."""
        for site, agent in self.pools.items():
            now = agent.blocks()
            if now != self._last.get(site):
                self.journal.set_meta(key(site), now)
                self._last[site] = now


def journaled_blocks(journal: Journal) -> dict[str, list[BlockRecord]]:
    """Every site's journaled blocks (for status and reports)."""
    rows = journal.db.execute("SELECT key FROM meta WHERE key LIKE 'blocks:%'").fetchall()
    return {name.removeprefix("blocks:"): journal.get_meta(name) or [] for (name,) in rows}
