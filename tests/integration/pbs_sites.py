"""The PBSSite of a torque-flavored test site (ci/slurm-cluster/slurmsite.py up NAME --flavor torque)."""

from __future__ import annotations

from typing import Any

import metasched as ms


def torque_site(info: Any, **options: Any) -> ms.PBSSite:
    """Torque dialect, the wrappers run in the site's controller container with its SLURM_CONF."""
    return ms.PBSSite(info.name, shared_dir=info.shared_dir, dialect="torque", login=tuple(info.login),
                      environment={"SLURM_CONF": info.slurm_conf}, **options)
