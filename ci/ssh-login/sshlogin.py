"""The SSH side of an SSH test site: keys, sshd's configuration, and a throw-away ``ssh_config`` for clients.

(``prepare_inetd``: the same for a site whose container has no network, Grid Engine's; its sshd runs per
connection in the container, started by the client's ProxyCommand.)

An SSH test site is a Slurm test site (``ci/slurm-cluster/slurmsite.py up NAME --ssh``) whose controller
container is also its login node: sshd listens on 127.0.0.1 at the site's own port (host network), key
logins only. Its shared directory is a Docker volume mounted in its containers and nowhere on this machine,
so everything metasched puts there travels over SSH. Files, in ``<site>/ssh/``::

    host_key, host_key.pub      sshd's host key (made here; pinned in known_hosts)
    client_key, client_key.pub  the key clients log in with (authorized_keys holds its public half)
    sshd_config                 read by the image's entrypoint (ci/ssh-login/image)
    known_hosts, ssh_config     for clients: ``ssh -F <site>/ssh/ssh_config <site>-login``

Host keys are checked (StrictHostKeyChecking yes against known_hosts); nothing here disables them.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

SSHD_CONFIG = """ListenAddress 127.0.0.1
Port {port}
HostKey {ssh}/host_key
AuthorizedKeysFile {ssh}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {ssh}/sshd.pid
MaxSessions 64
MaxStartups 64:30:128
X11Forwarding no
AllowTcpForwarding no
Subsystem sftp internal-sftp
"""

CLIENT_LOGIN = """    User root
    IdentityFile {ssh}/client_key
    IdentitiesOnly yes
    UserKnownHostsFile {ssh}/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
"""
CLIENT_CONFIG = """Host {alias}
    HostName 127.0.0.1
    Port {port}
""" + CLIENT_LOGIN

# A site without a network (Grid Engine's container): each connection runs sshd in inetd mode through
# `docker exec -i` (what a ProxyCommand to a jump host does), the host key pinned under the alias.
PROXY_CLIENT_CONFIG = """Host {alias}
    ProxyCommand {proxy}
    HostKeyAlias {alias}
""" + CLIENT_LOGIN


REMOTE_DIR = "/srv/metasched-remote"  # where an SSH site's shared directory is, in its containers only


def remote_dir(site: str) -> str:
    """An SSH test site's shared directory: a path only its containers have (its volume)."""
    return f"{REMOTE_DIR}/{site}"


def volume(site: str) -> str:
    """The Docker volume that holds an SSH test site's shared directory."""
    return f"metasched-remote-{site}"


def alias(site: str) -> str:
    """The Host name clients use for the site's login node (in its ssh_config)."""
    return f"{site}-login"


def ssh_dir(directory: str | Path) -> Path:
    """Where a site's SSH files are."""
    return Path(directory) / "ssh"


def client_config(directory: str | Path) -> Path:
    """The ssh_config that reaches the site's login node as ``alias(site)``."""
    return ssh_dir(directory) / "ssh_config"


def _key(path: Path) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                       check=True, timeout=30)


def prepare(directory: str | Path, site: str, port: int) -> None:
    """Make the keys and write sshd's and the clients' configuration for a site listening on `port`."""
    ssh = _keys(directory, known_as=f"[127.0.0.1]:{port}")
    (ssh / "sshd_config").write_text(SSHD_CONFIG.format(port=port, ssh=ssh))
    client_config(directory).write_text(CLIENT_CONFIG.format(alias=alias(site), port=port, ssh=ssh))


def prepare_inetd(directory: str | Path, site: str, container: str) -> None:
    """The same for a site whose `container` has no network: ``sshd -i`` through ``docker exec -i``.

    The container must mount `directory` at the same path (sshd reads its configuration and keys there).
    """
    ssh = _keys(directory, known_as=alias(site))
    (ssh / "sshd_config").write_text(SSHD_CONFIG.format(port=22, ssh=ssh))
    proxy = shlex.join(["docker", "exec", "-i", container, "/usr/sbin/sshd", "-i",
                        "-f", str(ssh / "sshd_config"), "-E", str(ssh / "sshd.log")])
    client_config(directory).write_text(PROXY_CLIENT_CONFIG.format(alias=alias(site), proxy=proxy, ssh=ssh))


def _keys(directory: str | Path, *, known_as: str) -> Path:
    """The site's SSH directory: host key (pinned as `known_as`), clients' key, authorized_keys."""
    ssh = ssh_dir(directory)
    ssh.mkdir(mode=0o700, exist_ok=True)
    _key(ssh / "host_key")
    _key(ssh / "client_key")
    (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
    key_type, key = (ssh / "host_key.pub").read_text().split()[:2]
    (ssh / "known_hosts").write_text(f"{known_as} {key_type} {key}\n")
    return ssh
