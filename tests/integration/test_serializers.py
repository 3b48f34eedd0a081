"""Python tasks' values travel with the serializer the campaign or the task chose, at every site kind.

dill reaches Slurm and Grid Engine nodes in the staged worker libraries; results come back framed with
their serializer's name (journal), big ones through a store and a proxy, and are read by a consumer that
uses another serializer at another site. An argument no serializer takes is refused at submit, naming the
task and the argument, and nothing already accepted is lost.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from metasched.data.serializers import serializer_of
from tests.integration.kinds import one_of_each

pytestmark = [pytest.mark.slurm, pytest.mark.ray]


class Grid:
    """A value of a class defined in the test module (travels by value with cloudpickle and dill)."""

    def __init__(self, n: int) -> None:
        self.cells = [float(i) for i in range(n)]

    def total(self) -> float:
        return sum(self.cells)


def test_values_travel_with_the_chosen_serializer_across_sites(
    alpha: slurmsite.SiteInfo, epsilon: object, ray_local: None, tmp_path: Path
) -> None:
    sites = one_of_each(alpha, epsilon)
    journal = tmp_path / "c.db"
    with ms.Campaign(f"serializers-{os.getpid()}", sites=sites, journal=journal, serializer="dill",
                     data_threshold=50_000, store=ms.FileStore(str(tmp_path / "driver-store"))) as c:

        def make(n: int) -> Grid:
            return Grid(n)

        @c.task(sites=["local"], serializer="pickle")
        def total(grid: Grid) -> float:
            return grid.total()

        small = [c.task(sites=[site])(make)(50) for site in ("alpha", "epsilon")]
        big = c.task(sites=["alpha"])(make)(20_000)  # bigger than data_threshold: stored at alpha
        totals = [total(g) for g in [*small, big]]
        with pytest.raises(ms.ConfigurationError) as refused:
            c.task()(make)(i for i in range(3))  # type: ignore[arg-type]
        assert "task 'make'" in str(refused.value)
        assert "argument 1 (a generator)" in str(refused.value)
        assert "'dill'" in str(refused.value)
        assert [t.result(timeout=240) for t in totals] == [1225.0, 1225.0, float(sum(range(20_000)))]
        assert small[0].result().total() == 1225.0  # the driver reads dill's bytes too
        kinds = {**{f.task_id: "dill" for f in small}, **{f.task_id: "pickle" for f in totals}}
    with sqlite3.connect(journal) as db:
        rows = dict(db.execute("SELECT task_id, result FROM tasks"))
        where = dict(db.execute("SELECT task_id, site FROM tasks"))
    assert len(rows) == 6, "the refused task left no trace; the six accepted ones all ran"
    for task_id, kind in kinds.items():
        assert serializer_of(rows[task_id]) == kind, task_id
    assert [where[f.task_id] for f in small] == ["alpha", "epsilon"]
    assert where[big.task_id] == "alpha"
