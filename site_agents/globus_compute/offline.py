"""An offline Globus Compute endpoint: a real ``GlobusComputeEngine`` served on 127.0.0.1, no cloud.

A real endpoint receives packed ``Task`` messages from the Globus cloud, hands them to its engine and
sends the packed ``Result`` messages back, keeping them until the client fetches them. This process
does the same for clients on this machine: the cloud hop is replaced by a ``multiprocessing`` manager
on 127.0.0.1 (authenticated with a key read from a file), everything after it is the endpoint
package's own engine - Parsl's HighThroughputExecutor with a local or a Slurm provider. It outlives
the campaigns that use it, as a real endpoint does, so a resumed campaign finds its tasks again.

Start it with ``python -m site_agents.globus_compute.offline --port P --authkey-file F --run-dir D``
(``--provider slurm --slurm-conf ... --partition ...`` for workers in Slurm jobs); it prints
``READY host:port`` once the engine accepts tasks.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any, cast

log = logging.getLogger("metasched.offline_endpoint")

#: What the engine's workers import on a compute node besides metasched's worker (see stage_worker).
NODE_LIBRARIES = ("parsl", "globus_compute_endpoint", "globus_compute_sdk", "globus_compute_common",
                  "globus_sdk", "dill", "zmq", "pyzmq.libs", "tblib", "typeguard", "psutil", "setproctitle",
                  "click", "cryptography", "_cffi_backend", "cffi", "jwt", "packaging", "pika", "filelock")

#: How long the engine's own shutdown may take before its blocks are cancelled directly.
SHUTDOWN_WAIT_S = 20.0

#: How long a fetched result stays (a scheduler that crashed before journaling it can fetch it again).
KEEP_FETCHED_S = 3600.0


class OfflineEndpoint:
    """Accepts packed Task messages, runs them on the engine, keeps packed Results until fetched."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._results: dict[str, bytes] = {}
        self._fetched: dict[str, float] = {}
        self._known: set[str] = set()

    def submit(self, tasks: Sequence[tuple[str, bytes]]) -> None:
        """Hand tasks (task id, packed Task) to the engine."""
        from globus_compute_endpoint.engines.base import GCFuture  # type: ignore[import-untyped]

        for task_id, body in tasks:
            with self._lock:
                if task_id in self._known:
                    continue  # a client repeating a batch after a lost answer: run it once
                self._known.add(task_id)
            future = GCFuture(gc_task_id=uuid.UUID(task_id))
            future.add_done_callback(lambda f, tid=task_id: self._done(tid, f))
            self._engine.submit(future, body, resource_specification={})

    def _done(self, task_id: str, future: Future[bytes]) -> None:
        try:
            packed = future.result()
        except Exception as exc:  # the engine could not run it at all: answer with a Result as the cloud does
            packed = _error_result(task_id, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._results[task_id] = packed

    def results(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        """The packed Results of those tasks that finished."""
        now = time.monotonic()
        with self._lock:
            for old in [t for t, at in self._fetched.items() if now - at > KEEP_FETCHED_S]:
                self._results.pop(old, None)
                del self._fetched[old]
            done = {t: self._results[t] for t in task_ids if t in self._results}
            for task_id in done:
                self._fetched.setdefault(task_id, now)
            return done

    def known(self, task_ids: Sequence[str]) -> list[str]:
        """Which of these tasks this endpoint received (finished or not)."""
        with self._lock:
            return [t for t in task_ids if t in self._known]

    def status(self) -> dict[str, Any]:
        """Tasks received and finished, and the engine's own status report.

        ``engine`` is the report an endpoint sends the cloud (its load among it); empty if the engine
        cannot say.
        """
        try:
            engine = dict(self._engine.get_status_report().global_state)
        except Exception:  # the interchange is starting or gone: no load, not a failed status call
            log.exception("the engine gave no status report")
            engine = {}
        with self._lock:
            return {"received": len(self._known), "finished": len(self._results), "engine": engine}


def _error_result(task_id: str, message: str) -> bytes:
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails

    details = ResultErrorDetails(code="EngineError", user_message=message)
    return bytes(messagepack.pack(Result(task_id=uuid.UUID(task_id), data=message, error_details=details)))


class _Manager(BaseManager):
    """The manager type both sides agree on: one shared object, registered as "endpoint"."""


_Manager.register("endpoint")  # clients' side; serve() registers the object itself


def connect(address: str, authkey: bytes) -> Any:
    """A client's proxy of the offline endpoint at ``host:port``.

    Raises OSError if none answers there, multiprocessing.AuthenticationError if it refuses the key.
    """
    host, _, port = address.rpartition(":")
    manager = _Manager(address=(host, int(port)), authkey=authkey)
    manager.connect()
    return manager.endpoint()  # type: ignore[attr-defined]


def build_engine(*, provider: str = "local", workers: int = 2, worker_python: str = sys.executable,
                 worker_pythonpath: str = "", slurm_conf: str = "", partition: str = "",
                 walltime: str = "01:00:00") -> Any:
    """A GlobusComputeEngine whose interchange and workers talk over 127.0.0.1 only."""
    from globus_compute_endpoint.engines import GlobusComputeEngine  # type: ignore[import-untyped]
    from parsl.launchers import SimpleLauncher
    from parsl.providers import LocalProvider, SlurmProvider

    worker_init = f"export PYTHONPATH={shlex.quote(worker_pythonpath)}" if worker_pythonpath else ""
    blocks: Any
    if provider == "local":
        blocks = LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,  # type: ignore[no-untyped-call]
                               worker_init=worker_init)
    else:
        os.environ["SLURM_CONF"] = slurm_conf
        blocks = SlurmProvider(partition=partition, nodes_per_block=1, init_blocks=1, min_blocks=1,
                               max_blocks=1, walltime=walltime, launcher=SimpleLauncher(),
                               worker_init=f"export SLURM_CONF={shlex.quote(slurm_conf)}; {worker_init}",
                               exclusive=False, cores_per_node=workers)
    engine = GlobusComputeEngine(address="127.0.0.1", loopback_address="127.0.0.1", provider=blocks,
                                 max_workers_per_node=workers, encrypted=True,
                                 heartbeat_period=5, heartbeat_threshold=30)
    # Start the interchange with this Python, and workers with the nodes' Python: neither needs the
    # endpoint's console script on PATH.
    engine.executor.interchange_launch_cmd = [sys.executable, "-m",
                                              "parsl.executors.high_throughput.interchange"]
    engine.executor.launch_cmd = engine.executor.launch_cmd.replace(
        "globus-compute-endpoint python-exec parsl.executors.high_throughput.process_worker_pool",
        f"{worker_python} -m parsl.executors.high_throughput.process_worker_pool", 1)
    return engine


def serve(args: argparse.Namespace) -> None:
    """Start the engine and answer clients on 127.0.0.1 until SIGTERM."""
    if args.stage_into:
        from site_agents.staging import stage_worker

        args.worker_pythonpath = str(stage_worker(args.stage_into, NODE_LIBRARIES))
    authkey = Path(args.authkey_file).read_bytes().strip()
    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    endpoint: OfflineEndpoint | None = None
    _Manager.register("endpoint", callable=lambda: endpoint)
    manager = _Manager(address=("127.0.0.1", args.port), authkey=authkey)
    server = manager.get_server()  # bound first: a taken port fails before any worker starts
    engine = build_engine(provider=args.provider, workers=args.workers, worker_python=args.worker_python,
                          worker_pythonpath=args.worker_pythonpath, slurm_conf=args.slurm_conf,
                          partition=args.partition, walltime=args.walltime)
    engine.start(endpoint_id=uuid.uuid4(), run_dir=str(run_dir))
    endpoint = OfflineEndpoint(engine)
    for signum in (signal.SIGTERM, signal.SIGINT):  # shut the engine down: its batch jobs end too
        signal.signal(signum, lambda *_: sys.exit(0))
    _, port = cast(tuple[str, int], server.address)  # the port the OS chose for --port 0
    print(f"READY 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        _shutdown(engine)


def _shutdown(engine: Any) -> None:
    """Shut the engine down, ending its blocks (batch jobs); then leave at once.

    A signal sent to the whole process group (Ctrl-C, `timeout`) also ends the engine's interchange,
    and the engine's own shutdown then waits forever for its answer: after SHUTDOWN_WAIT_S the blocks
    are cancelled through the provider directly.
    """
    stopper = threading.Thread(target=engine.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout=SHUTDOWN_WAIT_S)
    if stopper.is_alive():
        blocks = list(engine.executor.blocks_to_job_id.values())
        log.warning("the engine did not shut down in %.0f s (its interchange is gone?): cancelling its "
                    "blocks %s through the provider", SHUTDOWN_WAIT_S, blocks)
        engine.provider.cancel(blocks)
    logging.shutdown()
    os._exit(0)  # the SDK's atexit thread may wait on the engine too


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m site_agents.globus_compute.offline",
                                     description="An offline Globus Compute endpoint on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--authkey-file", required=True, help="file holding the clients' key")
    parser.add_argument("--run-dir", required=True, help="the engine's run directory")
    parser.add_argument("--provider", choices=("local", "slurm"), default="local")
    parser.add_argument("--workers", type=int, default=2, help="workers per node")
    parser.add_argument("--worker-python", default=sys.executable, help="the workers' Python")
    parser.add_argument("--worker-pythonpath", default="", help="PYTHONPATH of the workers")
    parser.add_argument("--stage-into", default="",
                        help="copy the workers' libraries into this shared directory and use that copy")
    parser.add_argument("--slurm-conf", default="", help="slurm.conf of the site (--provider slurm)")
    parser.add_argument("--partition", default="", help="Slurm partition (--provider slurm)")
    parser.add_argument("--walltime", default="01:00:00",
                        help="walltime of the worker job (--provider slurm)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(args)


if __name__ == "__main__":
    main()
