"""A placement policy from outside metasched: always the last feasible site (the campaign lists sites in
order of preference, most preferred last). Declared under ``metasched.placement_policies``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from metasched.records import SiteLoad, SiteName, TaskSpec


class LastSite:
    """The last candidate, full or not (a full one means: wait for it)."""

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        return candidates[-1].site if candidates else None
