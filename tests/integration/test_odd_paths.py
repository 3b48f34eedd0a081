"""A shared directory whose path holds a space and a quote works at every batch kind, or is refused with
the reason (issue 16: a live OpenPBS refused `#PBS -o` paths with a space unless double-quoted; OpenPBS's
quoting, and its refusal of a path with a double quote, are tested on the dialect in
tests/unit/test_pbs_parsers.py: no OpenPBS server runs here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import slurmsite

import metasched as ms
from metasched.sites.preflight import check_site
from tests.integration.pbs_sites import torque_site

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
ODD = "we ird 'dir"  # a space and a single quote


def odd(shared_dir: str, name: str = ODD) -> str:
    path = Path(shared_dir) / name
    path.mkdir(exist_ok=True)
    return str(path)


def square(x: int) -> int:
    return x * x


def runs_in(site: Any, tmp_path: Path, name: str) -> None:
    with ms.Campaign(name, sites=[site], journal=tmp_path / f"{name}.db") as c:
        command = c.command(["python3", "-c", "import os; print(os.getcwd())"], cwd=site.shared_dir)
        python = c.task(square)(7)
        assert command.result(timeout=180).stdout == f"{site.shared_dir}\n"
        assert python.result(timeout=180) == 49


def test_slurm(alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    site = ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=odd(alpha.shared_dir),
                        poll_interval=0.3)
    runs_in(site, tmp_path, "odd-slurm")


def test_gridengine(epsilon: Any, ray_local: None, tmp_path: Path) -> None:
    site = ms.GridEngineSite("epsilon", shared_dir=odd(epsilon.shared_dir), login=tuple(epsilon.login),
                             poll_interval=0.3)
    runs_in(site, tmp_path, "odd-ge")


def test_torque_wrappers_refuse_a_path_their_shell_would_split(zeta: slurmsite.SiteInfo, ray_local: None,
                                                              tmp_path: Path) -> None:
    """The Torque-style qsub over Slurm runs sbatch through a shell with the paths unquoted."""
    site = dataclasses.replace(torque_site(zeta, poll_interval=0.3), shared_dir=odd(zeta.shared_dir))
    checks = {c.check: c for c in check_site(site)}
    assert not checks["smoke task"].passed
    said = checks["smoke task"].detail
    assert "Torque-style qsub commands pass paths to sbatch through a shell unquoted" in said
    with ms.Campaign("odd-torque", sites=[site], journal=tmp_path / "t.db") as c:
        error = c.command(["true"]).exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert "use a shared_dir of letters, digits and ._-/ only" in str(error)
    fine = dataclasses.replace(site, shared_dir=odd(zeta.shared_dir, "plain_dir-2.x"))
    runs_in(fine, tmp_path, "plain-torque")
