"""The generated slurm.conf keeps every daemon on loopback and every path inside the site directory."""

from __future__ import annotations

import re

import pytest
import slurmsite


def _info(name: str = "alpha", base: int = 16800) -> slurmsite.SiteInfo:
    directory = f"/var/tmp/sites/{name}"
    return slurmsite.SiteInfo(
        name=name,
        directory=directory,
        slurm_conf=f"{directory}/etc/slurm.conf",
        shared_dir=f"{directory}/shared",
        controller_port=base,
        node_ports={f"{name}-c1": base + 1, f"{name}-c2": base + 2},
        cpus_per_node=8,
        memory_mb_per_node=8000,
        partition="debug",
        image="metasched/slurm:test",
    )


def test_conf_binds_loopback_and_isolates_ports() -> None:
    conf = slurmsite.render_slurm_conf(_info())
    assert "SlurmctldHost=localhost(127.0.0.1)" in conf
    assert "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny" in conf
    assert "SlurmctldPort=16800" in conf
    assert re.findall(r"Port=(\d+) ", conf) == ["16801", "16802"]
    assert "ClusterName=alpha" in conf


def test_every_path_is_inside_the_site_directory() -> None:
    info = _info()
    conf = slurmsite.render_slurm_conf(info)
    paths = re.findall(r"=(?:socket=)?(/\S+)", conf)
    assert paths, "expected paths in slurm.conf"
    assert all(p.startswith(info.directory + "/") for p in paths), paths


def test_two_sites_share_nothing() -> None:
    a = slurmsite.render_slurm_conf(_info("alpha", 16800))
    b = slurmsite.render_slurm_conf(_info("beta", 16820))
    shared = {line for line in a.splitlines() if "/var/tmp/sites" in line or "Port" in line or "Name" in line}
    assert shared.isdisjoint(b.splitlines())


def test_site_names_must_be_identifiers() -> None:
    with pytest.raises(slurmsite.SiteError, match="lowercase identifier"):
        slurmsite._site_dir("../etc")
