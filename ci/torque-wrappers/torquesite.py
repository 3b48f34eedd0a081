"""Bring up a Slurm site behind Debian's Torque-style wrappers (the PBS agent's Torque test site).

It is a flavor of the Slurm test sites (``ci/slurm-cluster/slurmsite.py``): the same controller and
compute containers from this folder's image (``slurm-wlm-torque`` installed, ``spank_pbs`` loaded so jobs
see ``PBS_JOBID``), reached through its controller container, where the wrappers are installed. **A
compatibility layer over Slurm, not Torque.**

    python ci/torque-wrappers/torquesite.py up|down NAME
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "slurm-cluster"))
import slurmsite  # noqa: E402  (ci/slurm-cluster/slurmsite.py)


def up(name: str, *, cpus: int = 4, fresh: bool = True, network: str = "host",
       binds: tuple[str, ...] = ()) -> slurmsite.SiteInfo:
    """A Torque-wrapper site, ready (its PBSSite: tests/integration/pbs_sites.py); `network` and `binds` as
    for ``slurmsite.up`` (a pilot test site in the loopback-only namespace)."""
    return slurmsite.up(name, fresh=fresh, flavor="torque", cpus=cpus, network=network, binds=binds)


def down(name: str) -> None:
    """Remove the site's containers."""
    slurmsite.down(name)


if __name__ == "__main__":
    action, site = sys.argv[1:3]
    if action == "up":
        info = up(site)
        print(f"site {info.name} ready: login {' '.join(info.login)}; SLURM_CONF={info.slurm_conf}")
    else:
        down(site)
