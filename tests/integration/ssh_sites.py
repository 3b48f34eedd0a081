"""The sites of the SSH test sites (`slurmsite.py up NAME --ssh`, `gesite.py up NAME --ssh`), as a user
would write them: transport ssh, the login node's alias in the site's throw-away ssh_config, the shared
directory at the site."""

from __future__ import annotations

from typing import Any

import sshlogin  # ci/ssh-login

import metasched as ms


def ssh_fields(info: Any, **options: Any) -> dict[str, Any]:
    """The fields every batch site over SSH to `info` has (poll every 0.3 s), with `options` over them."""
    return {"transport": "ssh", "host": sshlogin.alias(info.name),
            "ssh_options": ("-F", str(sshlogin.client_config(info.directory))),
            "shared_dir": info.remote_dir, "poll_interval": 0.3, **options}


def slurm_ssh_site(info: Any, **options: Any) -> ms.SlurmSite:
    """A Slurm site over SSH (its Slurm commands with the site's SLURM_CONF, on the login node)."""
    return ms.SlurmSite(info.name, **ssh_fields(info, slurm_conf=info.slurm_conf, **options))


def torque_ssh_site(info: Any, **options: Any) -> ms.PBSSite:
    """Torque dialect over SSH: the wrappers run on the site's login node, reached with ssh."""
    return ms.PBSSite(info.name, dialect="torque", environment={"SLURM_CONF": info.slurm_conf},
                      **ssh_fields(info, **options))


def gridengine_ssh_site(info: Any, **options: Any) -> ms.GridEngineSite:
    """Grid Engine over SSH: its clients run on the cell's host, reached with ssh (a ProxyCommand)."""
    return ms.GridEngineSite(info.name, **ssh_fields(info, **options))
