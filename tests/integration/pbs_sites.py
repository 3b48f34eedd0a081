"""The PBSSite of a torque-flavored test site (`slurmsite.py up NAME --flavor torque [--ssh]`)."""

from __future__ import annotations

from typing import Any

import metasched as ms


def torque_ssh_site(info: Any, **options: Any) -> ms.PBSSite:
    """Torque dialect over SSH: the wrappers run on the site's login node, reached with ssh."""
    import sshlogin  # ci/ssh-login

    return ms.PBSSite(info.name, shared_dir=info.remote_dir, dialect="torque", transport="ssh",
                      host=sshlogin.alias(info.name),
                      ssh_options=("-F", str(sshlogin.client_config(info.directory))),
                      environment={"SLURM_CONF": info.slurm_conf}, **options)


def torque_site(info: Any, **options: Any) -> ms.PBSSite:
    """Torque dialect, the wrappers run in the site's controller container with its SLURM_CONF."""
    return ms.PBSSite(info.name, shared_dir=info.shared_dir, dialect="torque", login=tuple(info.login),
                      environment={"SLURM_CONF": info.slurm_conf}, **options)
