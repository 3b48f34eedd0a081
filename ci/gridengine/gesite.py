"""Bring containerized Grid Engine 8.1.9 test sites up and down.

One container per site runs qmaster and execd (``ci/gridengine/image``). Its network is its own
loopback only (``docker --network none``): Grid Engine's daemons listen on every interface of their
network namespace, and this keeps them off the machine's. Clients run inside the container
(``docker exec``: the site's login prefix). The site's directory (its shared directory inside) is mounted
at the same path, so attempts written here are read there. With ``--ssh`` it is also a login node reached
over SSH whose shared directory is a volume only the container mounts (``remote_dir``).

    python ci/gridengine/gesite.py up NAME [--slots 4] [--ssh]    # print the site's settings
    python ci/gridengine/gesite.py down NAME
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ssh-login"))

import images  # noqa: E402  (ci/images.py)
import sitecontainers as containers  # noqa: E402  (ci/sitecontainers.py: docker-py)
import sshlogin  # noqa: E402  (ci/ssh-login/sshlogin.py)

ROOT = Path("/var/tmp/metasched-sites")
READY_TIMEOUT_S = 60.0
TAKES_JOBS_TIMEOUT_S = 120.0  # an execution daemon reports within its load report time (40 s)


SiteError = containers.SiteError  # what `up` raises (shared by every test site's script)


@dataclass(frozen=True, slots=True, kw_only=True)
class GESiteInfo:
    """What a client needs to use one Grid Engine site; persisted as site.json."""

    name: str
    container: str
    shared_dir: str
    slots: int
    image: str
    directory: str = ""  # the site's directory here, mounted in the container at the same path
    remote_dir: str = ""  # reached over SSH: the shared directory there, a Docker volume (else "")

    @property
    def volume(self) -> str:
        """The Docker volume holding the shared directory of a site reached over SSH."""
        return sshlogin.volume(self.name)

    @property
    def login(self) -> list[str]:
        """The argv prefix that runs a client command in the site's container."""
        return ["docker", "exec", "-i", self.container]


def up(name: str, *, slots: int = 4, network: str = "none", binds: tuple[str, ...] = (),
       ssh: bool = False) -> GESiteInfo:
    """Bring a site up (or confirm it is up) and return its description once the cell takes jobs.

    `network` "container:<holder>" puts the cell in the pilot tests' loopback-only namespace (ci/netns.py;
    the host name is then the holder's, ``localhost``); `binds` are host paths mounted read-only at the
    same path (this machine's Python and virtualenv, for pilot nodes). `ssh` also makes it reachable
    over SSH (sshd per connection through ``docker exec``, ci/ssh-login), its shared directory there a
    Docker volume (`remote_dir`).
    """
    image = images.ensure_gridengine().tag
    directory = ROOT / name
    shared = directory / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    info = GESiteInfo(name=name, container=f"metasched-ge-{name}", shared_dir=str(shared), slots=slots,
                      image=image, directory=str(directory),
                      remote_dir=sshlogin.remote_dir(name) if ssh else "")
    existing = containers.state(info.container)
    if (existing is not None and (existing.state, existing.image) == ("running", image) and _ready(info)
            and _saved(directory) == info):
        return info
    containers.remove([info.container])
    containers.remove_volume(info.volume)
    if ssh:
        sshlogin.prepare_inetd(directory, name, info.container)
    volumes = [f"{directory}:{directory}", *(f"{p}:{p}:ro" for p in binds),
               *([f"{info.volume}:{info.remote_dir}"] if ssh else [])]
    try:
        containers.run(info.container, image, [str(slots)], labels={"metasched.gridengine": name},
                       network=network, volumes=volumes, hostname=f"ge-{name}" if network == "none" else None)
    except containers.ContainerError as exc:
        raise SiteError(str(exc)) from exc
    if not containers.wait_for(lambda: _ready(info), timeout_s=READY_TIMEOUT_S):
        raise SiteError(f"Grid Engine site {name!r} not ready after {READY_TIMEOUT_S:.0f} s:\n"
                        f"{containers.logs(info.container, tail=30)}")
    # the entrypoint says ready after at most 20 s even if the execution daemon has not reported yet
    # (on a loaded machine it may take up to its load report time): a site is up when its queue takes jobs
    if not containers.wait_for(lambda: takes_jobs(info), timeout_s=TAKES_JOBS_TIMEOUT_S):
        raise SiteError(f"Grid Engine site {name!r}: its queue takes no jobs after "
                        f"{TAKES_JOBS_TIMEOUT_S:.0f} s (an instance in qstat -f has a state, e.g. au):\n"
                        f"{containers.logs(info.container, tail=30)}")
    (directory / "site.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def _saved(directory: Path) -> GESiteInfo | None:
    try:
        return GESiteInfo(**json.loads((directory / "site.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _ready(info: GESiteInfo) -> bool:
    return "gridengine: ready" in containers.logs(info.container)


def takes_jobs(info: GESiteInfo) -> bool:
    """Whether every queue instance of the cell takes jobs: none has a state (after a qmaster restart they
    are "au", unreachable, until the execution daemon reports to it again, up to its load report time)."""
    listed = subprocess.run([*info.login, "qstat", "-f"], capture_output=True, text=True, timeout=60,
                            check=False)
    rows = [line.split() for line in listed.stdout.splitlines() if "@" in line]
    return listed.returncode == 0 and bool(rows) and all(len(row) == 5 for row in rows)  # a 6th: states


def down(name: str) -> None:
    """Remove the site's container and its SSH volume (the shared directory here is kept)."""
    containers.remove([f"metasched-ge-{name}"])
    containers.remove_volume(sshlogin.volume(name))


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="gesite.py")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up")
    start.add_argument("name")
    start.add_argument("--slots", type=int, default=4)
    start.add_argument("--ssh", action="store_true", help="also reachable over SSH (ci/ssh-login)")
    stop = sub.add_parser("down")
    stop.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "up":
        info = up(args.name, slots=args.slots, ssh=args.ssh)
        print(json.dumps({**asdict(info), "login": info.login}, indent=2))
    else:
        down(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
