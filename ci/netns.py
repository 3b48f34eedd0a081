"""A network namespace with only a loopback interface, for everything that listens beyond 127.0.0.1.

Pilot mode makes Ray listen on every interface (its node addresses are not 127.0.0.1). On this machine that
must never reach the machine's own namespace, so the pilot tests run inside the namespace of a **holder**
container started with ``--network none`` (its only interface is ``lo``, already up): the pilot test sites'
containers join it (``--network container:<holder>``), and the test driver with its Ray head enters it with
``nsenter --net`` (root). Nodes then use distinct 127.x.y.z addresses, all on that ``lo``.

Usage: ``python ci/netns.py run -- CMD ARGS...`` runs CMD inside the namespace (the holder is started if
needed; ``METASCHED_NETNS_HOLDER`` names it for the fixtures); ``python ci/netns.py down`` removes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import images  # noqa: E402  (ci/images.py)
import sitecontainers as containers  # noqa: E402  (ci/sitecontainers.py: docker-py)

HOLDER = "metasched-netns-holder"
HOLDER_ENV = "METASCHED_NETNS_HOLDER"
LABEL = "metasched.netns"
EXTRA_ADDRESS = "127.0.0.2/8"


def this_python() -> tuple[str, ...]:
    """The directories a pilot test site's nodes mount read-only at the same paths: this Python and its
    virtualenv, so pilots run the head's very Ray and Python (as a shared filesystem gives them)."""
    return tuple(sorted({sys.base_prefix, sys.prefix}))


def holder_pid(name: str = HOLDER) -> int:
    """Start the holder if it is not running, and return the PID whose namespace it holds."""
    found = containers.state(name)
    if found is None or found.state != "running":
        containers.remove([name])
        # Containers joined to it share its hostname and /etc/hosts: "localhost" resolves (to 127.0.0.1),
        # as slurmctld and slurmd need their own host name to.
        containers.run(name, images.ensure_base().tag, ["sleep", "infinity"], labels={LABEL: name},
                       network="none", hostname="localhost")
        pid = _pid(name)
        # glibc's getaddrinfo(AI_ADDRCONFIG) returns no IPv4 address at all while the only one configured
        # is 127.0.0.1, so Slurm could not even resolve "localhost": a second loopback address (on lo,
        # still the namespace's only interface) makes it answer.
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "addr", "add", EXTRA_ADDRESS,
                        "dev", "lo"], check=True, capture_output=True, timeout=30)
    return _pid(name)


def _pid(name: str) -> int:
    pid = int(containers.engine().containers.get(name).attrs["State"]["Pid"])
    if pid <= 0:
        raise RuntimeError(f"holder container {name} has no process; see `docker logs {name}`")
    return pid


def namespace_of(pid: int) -> str:
    """The network namespace of a process, as the kernel names it (net:[inode])."""
    return os.readlink(f"/proc/{pid}/ns/net")


def inside(name: str = HOLDER) -> bool:
    """Whether this process runs in the holder's namespace (and the holder runs)."""
    found = containers.state(name)
    if found is None or found.state != "running":
        return False
    return namespace_of(_pid(name)) == namespace_of(os.getpid())


def main(argv: list[str]) -> int:
    """``run -- CMD...`` or ``down``."""
    if argv[:1] == ["down"]:
        containers.remove([HOLDER])
        return 0
    if argv[:2] != ["run", "--"] or len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    pid = holder_pid()
    os.environ[HOLDER_ENV] = HOLDER
    command = ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv[2:]]
    os.execvp(command[0], command)  # noqa: S606  (argv, no shell)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
