"""Which sites take no new work now, and why: journaled as it changes, for ``metasched status``.

A site stops taking work when its server does not answer (or answers slowly), a submission to it is left
unanswered, none of its nodes takes jobs, or it is drained; its agent says why (``SiteLoad.problem``).
The scheduler's step reads the sites' words at most once a second and writes the journal only when they
change, keeping since when each site has been out of work (its reason may change meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypedDict

from metasched.journal import Journal
from metasched.records import SiteLoad, SiteName

KEY = "site_problems"
CHECK_EVERY_S = 1.0
DRAINED = "drained: takes no new attempts (metasched drain --undo to end it)"


class SiteProblem(TypedDict):
    """One site out of work: why, and since when (epoch seconds)."""

    problem: str
    since: float


class SiteHealth:
    """Journals the sites that take no new work, when that changes."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._last: dict[str, SiteProblem] = journaled_problems(journal)  # a resumed campaign's too
        self._checked = -CHECK_EVERY_S

    def record(self, loads: Callable[[], Mapping[SiteName, SiteLoad]]) -> None:
        """Journal the sites' problems if they changed (at most one look a second)."""
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        problems = {site: load.problem for site, load in loads().items() if load.problem}
        if problems == {site: said["problem"] for site, said in self._last.items()}:
            return
        wall = time.time()
        self._last = {site: SiteProblem(problem=problem, since=self._last[site]["since"] if site in self._last
                                        else wall) for site, problem in problems.items()}
        self.journal.set_meta(KEY, self._last)

    def closed(self) -> None:
        """The campaign's sites are closed: none is out of work any more."""
        if self._last:
            self._last = {}
            self.journal.set_meta(KEY, {})


def journaled_problems(journal: Journal) -> dict[str, SiteProblem]:
    """The sites out of work as last journaled ({} if none, or never journaled)."""
    return dict(journal.get_meta(KEY) or {})
