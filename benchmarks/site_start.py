"""A campaign's site start: its sites one after another (before) vs all at once (``start_agents``).

    .venv/bin/python benchmarks/site_start.py [--rounds 5] [--keep]

Three batch sites brought up here: Slurm ``alpha`` (shared filesystem, commands on this machine), Slurm
``omicron`` and the Torque-style wrappers ``xi`` (both reached only over SSH, their own ``sshd`` on
127.0.0.1). Each round builds fresh agents of the three sites (as a campaign's scheduler does) and starts
them the old way, one after another, and the new way, a thread each (``metasched.scheduler.agents``),
closing them after each; the order alternates per round. The SSH masters are closed between runs, so
every start opens its connection (what a new campaign does). Printed: each run's seconds and the
ratio of all at once to one after another, and each site's start alone (median of 3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "ci"), str(ROOT / "ci" / "slurm-cluster")]

import slurmsite  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.scheduler.agents import close_agents, start_agents  # noqa: E402
from metasched.sites.base import SiteAgent  # noqa: E402
from metasched.sites.registry import agent_for  # noqa: E402
from metasched.ssh import close_shared  # noqa: E402
from tests.integration.ssh_sites import slurm_ssh_site, torque_ssh_site  # noqa: E402


def one_after_another(agents: list[SiteAgent]) -> None:
    for agent in agents:
        agent.start()


def timed(sites: list[object], start: Callable[[list[SiteAgent]], None]) -> float:
    agents = [agent_for(site) for site in sites]
    began = time.perf_counter()
    start(agents)
    took = time.perf_counter() - began
    close_agents(agents)
    close_shared()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the sites up afterwards")
    args = parser.parse_args()
    alpha = slurmsite.up("alpha")
    omicron = slurmsite.up("omicron", ssh=True, cpus=4)
    xi = slurmsite.up("xi", flavor="torque", ssh=True, cpus=4)
    sites = [ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir),
             slurm_ssh_site(omicron), torque_ssh_site(xi)]
    runs: dict[str, list[float]] = {"one after another": [], "all at once": []}
    try:
        timed(sites, start_agents)  # warm: the worker staged at each site, page cache
        for round_no in range(args.rounds):
            order = list(runs) if round_no % 2 == 0 else list(reversed(runs))
            for label in order:
                way = one_after_another if label == "one after another" else start_agents
                runs[label].append(timed(sites, way))
            print(f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()),
                  flush=True)
        each = {site.name: statistics.median(timed([site], start_agents) for _ in range(3)) for site in sites}
        alone = ", ".join(f"{name} {took:.2f} s" for name, took in each.items())
    finally:
        if not args.keep:
            for name in ("alpha", "omicron", "xi"):
                slurmsite.down(name)
    before, after = (statistics.median(v) for v in runs.values())
    print(f"three sites' start, median of {args.rounds}: one after another {before:.2f} s, all at once "
          f"{after:.2f} s; ratio {after / before:.2f}; each site alone: {alone}")


if __name__ == "__main__":
    main()
