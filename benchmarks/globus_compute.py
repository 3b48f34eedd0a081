"""Tasks through a Globus Compute site vs the same engine driven by hand, same run.

    .venv/bin/python benchmarks/globus_compute.py [--tasks 400] [--rounds 3] [--workers 4]

Both sides use a real GlobusComputeEngine (Parsl HTEX, local provider, --workers workers, 127.0.0.1)
- the engine a Globus Compute endpoint runs; the Globus cloud is not reachable here.
Baseline: a script that packs N `Task` messages of a trivial function with ComputeSerializer, hands
them to an engine in its own process (`engine.submit`) and waits for every `Result`: the floor of any
client. metasched: a campaign with one GlobusComputeSite whose offline endpoint (a separate process,
its own engine with as many workers) receives the same N trivial function tasks; every transition
journaled, every task id journaled before its call is sent. Prints tasks/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from campaign_rate import tasks_per_second  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.runtime import init_embedded_ray  # noqa: E402


def square(x: int) -> int:
    return x * x


def by_hand(engine: object, n: int) -> float:
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task
    from globus_compute_endpoint.engines.base import GCFuture
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    start = time.perf_counter()
    futures = []
    for i in range(n):
        task_id = uuid.uuid4()
        buffer = serde.pack_buffers([serde.serialize(square), serde.serialize((i,)), serde.serialize({})])
        future = GCFuture(gc_task_id=task_id)
        engine.submit(future, messagepack.pack(Task(task_id=task_id, task_buffer=buffer)), {})  # type: ignore[attr-defined]
        futures.append(future)
    wait(futures)
    results = [messagepack.unpack(f.result()) for f in futures]
    elapsed = time.perf_counter() - start
    bad = [r for r in results if r.is_error]
    if bad:
        raise SystemExit(f"{len(bad)} tasks failed by hand, e.g. {bad[0].data}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    from site_agents.globus_compute.offline import build_engine

    tmp = Path(tempfile.mkdtemp(prefix="metasched-bench-gc-"))
    engine = build_engine(provider="local", workers=args.workers)  # the engine the offline endpoint runs
    engine.start(endpoint_id=uuid.uuid4(), run_dir=str(tmp / "by-hand"))
    key = tmp / "key"
    key.write_text(secrets.token_hex(32))
    endpoint = subprocess.Popen([sys.executable, "-m", "site_agents.globus_compute.offline", "--port", "0",
                                 "--authkey-file", str(key), "--run-dir", str(tmp / "endpoint"),
                                 "--workers", str(args.workers)], stdout=subprocess.PIPE, text=True)
    assert endpoint.stdout is not None
    ready = endpoint.stdout.readline().strip()
    if not ready.startswith("READY "):
        engine.shutdown()
        raise SystemExit(f"the offline endpoint did not start (see its output above): {ready!r}")
    address = ready.split()[1]
    print(f"offline endpoint {address}", flush=True)
    init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    site = ms.GlobusComputeSite("gc", offline_endpoint=address, authkey_file=str(key),
                                cores=args.workers, poll_interval=0.05, requests_per_s=20)
    try:
        by_hand(engine, 40)  # workers up and warm on both sides
        tasks_per_second("bench-gc-warm", [site], lambda c: [c.task(square)(i) for i in range(40)])
        ratios = []
        for round_no in range(args.rounds):
            raw = by_hand(engine, args.tasks)
            ours = tasks_per_second(f"bench-gc-{round_no}", [site],
                                    lambda c: [c.task(square)(i) for i in range(args.tasks)])
            ratios.append(ours / raw)
            print(f"round {round_no + 1}: engine by hand {raw:7.1f} tasks/s | metasched {ours:7.1f} "
                  f"tasks/s | ratio {ours / raw:.2f}", flush=True)
        ratios.sort()
        print(f"median ratio over {args.rounds} rounds: {ratios[len(ratios) // 2]:.2f} (1.0 = no overhead)")
    finally:
        endpoint.terminate()
        endpoint.wait(timeout=30)
        engine.shutdown()


if __name__ == "__main__":
    main()
