"""A campaign's sites with one of each kind the tests run without pilots: local, Slurm, Grid Engine."""

from __future__ import annotations

from typing import Any

import slurmsite

import metasched as ms


def one_of_each(alpha: slurmsite.SiteInfo, epsilon: Any) -> list[Any]:
    """The local site (2 cores), Slurm site alpha and Grid Engine site epsilon (both polled every 0.3 s)."""
    return [ms.LocalSite("local", cores=2),
            ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir,
                         poll_interval=0.3),
            ms.GridEngineSite("epsilon", shared_dir=epsilon.shared_dir, login=tuple(epsilon.login),
                              poll_interval=0.3)]
