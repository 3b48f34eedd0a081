"""Bring containerized Grid Engine 8.1.9 test sites up and down.

One container per site runs qmaster and execd (``ci/gridengine/image``). Its network is its own
loopback only (``docker --network none``): Grid Engine's daemons listen on every interface of their
network namespace, and this keeps them off the machine's. Clients run inside the container
(``docker exec``: the site's login prefix). The site's shared directory is mounted at the same path,
so attempts written here are read there.

    python ci/gridengine/gesite.py up NAME [--slots 4]    # print the site's settings
    python ci/gridengine/gesite.py down NAME
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import images  # noqa: E402  (ci/images.py)
import sitecontainers as containers  # noqa: E402  (ci/sitecontainers.py: docker-py)

ROOT = Path("/var/tmp/metasched-sites")
READY_TIMEOUT_S = 60.0


SiteError = containers.SiteError  # what `up` raises (shared by every test site's script)


@dataclass(frozen=True, slots=True, kw_only=True)
class GESiteInfo:
    """What a client needs to use one Grid Engine site; persisted as site.json."""

    name: str
    container: str
    shared_dir: str
    slots: int
    image: str

    @property
    def login(self) -> list[str]:
        """The argv prefix that runs a client command in the site's container."""
        return ["docker", "exec", "-i", self.container]


def up(name: str, *, slots: int = 4, network: str = "none", binds: tuple[str, ...] = ()) -> GESiteInfo:
    """Bring a site up (or confirm it is up) and return its description once the cell takes jobs.

    `network` "container:<holder>" puts the cell in the pilot tests' loopback-only namespace (ci/netns.py;
    the host name is then the holder's, ``localhost``); `binds` are host paths mounted read-only at the
    same path (this machine's Python and virtualenv, for pilot nodes).
    """
    image = images.ensure_gridengine().tag
    directory = ROOT / name
    shared = directory / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    info = GESiteInfo(name=name, container=f"metasched-ge-{name}", shared_dir=str(shared), slots=slots,
                      image=image)
    existing = containers.state(info.container)
    if existing is not None and (existing.state, existing.image) == ("running", image) and _ready(info):
        return info
    containers.remove([info.container])
    try:
        containers.run(info.container, image, [str(slots)], labels={"metasched.gridengine": name},
                       network=network, volumes=[f"{shared}:{shared}", *(f"{p}:{p}:ro" for p in binds)],
                       hostname=f"ge-{name}" if network == "none" else None)
    except containers.ContainerError as exc:
        raise SiteError(str(exc)) from exc
    if not containers.wait_for(lambda: _ready(info), timeout_s=READY_TIMEOUT_S):
        raise SiteError(f"Grid Engine site {name!r} not ready after {READY_TIMEOUT_S:.0f} s:\n"
                        f"{containers.logs(info.container, tail=30)}")
    (directory / "site.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def _ready(info: GESiteInfo) -> bool:
    return "gridengine: ready" in containers.logs(info.container)


def down(name: str) -> None:
    """Remove the site's container (the shared directory is kept)."""
    containers.remove([f"metasched-ge-{name}"])


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="gesite.py")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up")
    start.add_argument("name")
    start.add_argument("--slots", type=int, default=4)
    stop = sub.add_parser("down")
    stop.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "up":
        info = up(args.name, slots=args.slots)
        print(json.dumps({**asdict(info), "login": info.login}, indent=2))
    else:
        down(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
