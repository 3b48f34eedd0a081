"""Per-task resource use, as each attempt's worker measures it, at the local, Slurm and Grid Engine sites:
journaled per attempt, in `metasched status --json` and the table, and in the report."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.kinds import one_of_each

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
BURN = ("import time\nblock = bytearray(300 * 2**20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
        "end = time.process_time() + 1.0\nwhile time.process_time() < end: pass")


def hold_memory(mb: int) -> int:
    """Touch `mb` MB for a moment (the peak), then let it go."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block) // 2**20


def burn() -> float:
    import time

    end = time.process_time() + 1.0
    while time.process_time() < end:
        pass
    return end


def nap() -> None:
    import time

    time.sleep(1.0)


def fail() -> None:
    burn()
    raise RuntimeError("after burning a second")


def test_each_attempt_reports_its_wall_cpu_and_memory_peak(
    alpha: slurmsite.SiteInfo, epsilon: object, ray_local: None, tmp_path: Path
) -> None:
    sites = one_of_each(alpha, epsilon)
    journal = tmp_path / "c.db"
    names: dict[str, str] = {}
    with ms.Campaign(f"usage-{os.getpid()}", sites=sites, journal=journal) as c:
        futures = []
        for site in ("local", "alpha", "epsilon"):
            pinned = {"sites": [site]}
            for name, fn in (("memory", hold_memory), ("burn", burn), ("nap", nap), ("fail", fail)):
                args = (300,) if fn is hold_memory else ()
                futures.append(c.task(name=f"{name}@{site}", **pinned)(fn)(*args))
            futures.append(c.command([sys.executable if site == "local" else "python3", "-c", BURN],
                                     name=f"command@{site}", **pinned))
        # after the 300 MB task at the same pooled local workers: the peak is per attempt, not per worker
        futures += [c.task(name=f"small-{i}@local", sites=["local"])(burn)() for i in range(2)]
        ms.wait(futures, timeout=300)
        names = {f.task_id: f.name for f in futures}
    with sqlite3.connect(journal) as db:
        rows = {names[t]: (wall, cpu, rss) for t, wall, cpu, rss in
                db.execute("SELECT a.task_id, wall_s, cpu_s, max_rss_mb FROM usage u JOIN attempts a "
                           "ON a.attempt_id = u.attempt_id")}
    assert set(rows) == set(names.values()), "every attempt that ran, failed ones too, is measured"
    for site in ("local", "alpha", "epsilon"):
        wall, cpu, rss = rows[f"memory@{site}"]
        assert rss is not None, site
        assert rss >= 300, (site, rss)
        for burner in (f"burn@{site}", f"fail@{site}", f"command@{site}"):
            wall, cpu, _ = rows[burner]
            assert 0.9 <= cpu <= wall + 0.5, (burner, wall, cpu)
        wall, cpu, _ = rows[f"nap@{site}"]
        assert wall >= 1.0, (site, wall, cpu)
        assert cpu < 0.5, (site, wall, cpu)
    assert rows["command@local"][2] >= 300  # wait4 of the command's own process
    assert rows["command@alpha"][2] is None  # a batch command runs with no Python beside it: no peak
    assert all(rows[f"small-{i}@local"][2] < 200 for i in range(2)), rows

    out = subprocess.run([sys.executable, "-m", "metasched", "status", "--json", "--usage", str(journal)],
                         capture_output=True, text=True, timeout=60, check=False)
    status = json.loads(out.stdout)
    assert status["usage"]["local"]["attempts"] == 7
    assert status["usage"]["alpha"]["max_rss_mb"] >= 300
    assert status["usage"]["epsilon"]["cpu_s"] >= 3 * 0.9
    assert [h["wall_s"] for h in status["heaviest"]] == sorted((h["wall_s"] for h in status["heaviest"]),
                                                             reverse=True)
    assert len(status["heaviest"]) == 10
    table = subprocess.run([sys.executable, "-m", "metasched", "status", "--usage", str(journal)],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={**os.environ, "COLUMNS": "200"})
    assert "resource use" in table.stdout
    assert "longest attempts" in table.stdout
    plain = subprocess.run([sys.executable, "-m", "metasched", "status", str(journal)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert "resource use" not in plain.stdout
    report = subprocess.run([sys.executable, "-m", "metasched", "report", str(journal), "--out",
                             str(tmp_path / "report")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>Resource use</h2>" in page
    # the longest attempts are whichever ran longest this time: the page lists the ones status named
    assert all(f"<td>{h['task_name']}</td>" in page for h in status["heaviest"]), status["heaviest"]
    assert (tmp_path / "report" / "usage.png").stat().st_size > 1000
