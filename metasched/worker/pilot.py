"""A pilot block's program on each of its nodes: one Ray worker node that joins the campaign's head.

Run as ``python -m metasched.worker.pilot BLOCK_DIR`` inside a batch job (once per node, through the
scheduler's parallel launcher on multi-node blocks). It reads the block's plan (``pilot.json``: the head's
address, the site, the block, its cores, GPUs and memory, when to leave), starts ``ray start --block`` with
the resources ``site:<name>`` and ``block:<id>`` and token authentication (the token file beside the plan,
readable by its owner only), and leaves when the job is cancelled (TERM), when the Ray node stops (its head
is gone), or ``leave_after_s`` after it started, a little before the block's walltime, so the agent sees an
orderly end rather than a kill. A block may start before its head (``metasched.prestart`` submits the
first blocks while the head starts): the pilot waits up to ``HEAD_WAIT_S`` for the head's port to answer,
then runs ``ray start``. A head that cannot be reached makes the pilot or ``ray start`` fail with their own
lines in the job's output, which the agent quotes.

The block directory is an attempt directory (``metasched.attempt_dir``: script, logs, claim); this module
owns the two files a block adds to it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

PLAN_FILE = "pilot.json"
TOKEN_FILE = "ray_token"
STOP_GRACE_S = 20.0  # how long `ray start --block` gets to stop its node after TERM
HEAD_WAIT_S = 120.0  # how long a pilot waits for its head to answer (it may still be starting)
HEAD_RETRY_S = 0.1
PORT_OPTIONS = ("node-manager-port", "object-manager-port", "metrics-export-port",
                "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")


@dataclass(frozen=True, slots=True, kw_only=True)
class PilotPlan:
    """What every node of one block needs to join the campaign's Ray cluster."""

    head: str  # the GCS address, host:port
    site: str
    block: str
    cores: int
    gpus: int = 0
    memory_mb: int = 0
    object_store_mb: int = 256
    leave_after_s: float | None = None

    @property
    def resources(self) -> dict[str, float]:
        """The custom resources the node offers: the site's and the block's, one unit per core."""
        return {f"site:{self.site}": float(self.cores), f"block:{self.block}": float(self.cores)}


def write_plan(block_dir: Path, plan: PilotPlan, token: str) -> None:
    """Write the plan and the Ray token (owner-only) into the block's directory."""
    (block_dir / PLAN_FILE).write_text(json.dumps(asdict(plan)))
    token_file = block_dir / TOKEN_FILE
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)


def read_plan(block_dir: Path) -> PilotPlan:
    """The plan `write_plan` wrote."""
    return PilotPlan(**json.loads((block_dir / PLAN_FILE).read_text()))


def node_ip(head: str, block: str, node: str) -> str | None:
    """The address this node joins with: Ray's own choice, unless the head is on a loopback address.

    A head on 127.x shares its network with the nodes (one machine, or a loopback-only test namespace);
    every node then needs an address of its own in 127.0.0.0/8, derived from the block and the node name.
    """
    host = head.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None
    if not loopback:
        return None
    digest = hashlib.sha256(f"{block}/{node}".encode()).digest()
    return f"127.{1 + digest[0] % 254}.{digest[1]}.{1 + digest[2] % 254}"


def ray_start_argv(plan: PilotPlan, ip: str | None, temp_dir: Path) -> list[str]:
    """``ray start`` joining the head as a worker node with this block's resources (argv, no shell).

    The node's session (logs and Unix sockets) goes in `temp_dir`, a directory of its own: Ray names its
    sockets after looking for free names, and two nodes starting at once on one machine take the same.
    """
    argv = [sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={plan.head}", "--block",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={plan.cores}", f"--num-gpus={plan.gpus}",
            f"--resources={json.dumps(plan.resources)}",
            f"--object-store-memory={plan.object_store_mb * 2**20}", "--disable-usage-stats"]
    if plan.memory_mb:
        argv.append(f"--memory={plan.memory_mb * 2**20}")
    if ip is not None:
        argv.append(f"--node-ip-address={ip}")
        # Nodes sharing one network (and so one port space) must not take Ray's fixed default ports.
        ports = free_ports(ip, len(PORT_OPTIONS))
        argv += [f"--{option}={port}" for option, port in zip(PORT_OPTIONS, ports, strict=True)]
    return argv


def free_ports(ip: str, count: int) -> list[int]:
    """`count` distinct ports free on `ip` now (the kernel's choice; Ray binds them moments later)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((ip, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def head_answers(head: str, within_s: float) -> bool:
    """Whether the head's GCS port (host:port) takes a connection within `within_s` seconds."""
    host, port = head.rsplit(":", 1)
    deadline = time.monotonic() + within_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(HEAD_RETRY_S)


def main(argv: list[str]) -> int:
    """Join the head and stay until told to leave; the exit status is ``ray start``'s."""
    if len(argv) != 1:
        print("usage: python -m metasched.worker.pilot BLOCK_DIR", file=sys.stderr)
        return 2
    block_dir = Path(argv[0])
    plan = read_plan(block_dir)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(block_dir / TOKEN_FILE),
           "RAY_USAGE_STATS_ENABLED": "0"}
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    ip = node_ip(plan.head, plan.block, f"{node}/{os.getpid()}")
    print(f"metasched pilot {plan.block} of site {plan.site} on {node}: joining {plan.head}"
          f"{f' as {ip}' if ip else ''} with {plan.cores} cores", flush=True)
    if not head_answers(plan.head, HEAD_WAIT_S):
        print(f"metasched pilot {plan.block}: the Ray head at {plan.head} did not answer within "
              f"{HEAD_WAIT_S:g} s", flush=True)
        return 1
    sockets = Path(tempfile.mkdtemp(prefix=f"ms-{plan.block}-"))
    child = subprocess.Popen(ray_start_argv(plan, ip, sockets), env=env)  # noqa: S603  (argv, no shell)
    stopping: list[str] = []

    def leave(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    signal.signal(signal.SIGUSR1, leave)  # the scheduler's warning before the walltime
    deadline = None if plan.leave_after_s is None else time.monotonic() + plan.leave_after_s
    while child.poll() is None:
        if stopping or (deadline is not None and time.monotonic() >= deadline):
            why = stopping[0] if stopping else "the block's time is nearly up"
            print(f"metasched pilot {plan.block}: leaving ({why})", flush=True)
            child.terminate()
            try:
                child.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
            return 0
        time.sleep(0.5)
    print(f"metasched pilot {plan.block}: the Ray node stopped (exit {child.returncode})", flush=True)
    return child.returncode or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
