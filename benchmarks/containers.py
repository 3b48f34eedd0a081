"""Container tasks on the local site vs the same containers started by hand with docker-py, same run.

    .venv/bin/python benchmarks/containers.py [--tasks 40] [--rounds 3]

Baseline: two threads (the site's 2 cores) each running `containers.run(image, ["true"], network_mode=
"host")`, waiting, reading the logs and removing the container - what a careful script does by hand.
metasched: a campaign on LocalSite("local", cores=2, container_runtimes=("docker",)) submitting the same
N commands with container=ms.Image(image), every transition journaled. Prints containers/s of each and
their ratio (1.0 = no overhead). Needs the task image: `make images`.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ci"))

import images  # noqa: E402  (ci/images.py)
from campaign_rate import tasks_per_second  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.runtime import init_embedded_ray  # noqa: E402


def by_hand(image: str, n: int) -> float:
    import docker

    client = docker.from_env()

    def one(_: int) -> None:
        container = client.containers.run(image, ["true"], detach=True, network_mode="host")
        container.wait()
        container.logs()
        container.remove(force=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - start)


def through_metasched(image: str, n: int, name: str, work_dir: str) -> float:
    site = ms.LocalSite("local", cores=2, container_runtimes=("docker",), work_dir=work_dir)
    return tasks_per_second(name, [site], lambda c: [c.command(["true"], container=ms.Image(image))
                                                     for _ in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    image = images.ensure_task().tag
    init_embedded_ray(num_cpus=2, resources={"site:local": 2.0}, object_store_mb=256, namespace="metasched")
    by_hand(image, 4)  # warm the engine's caches
    ratios = []
    for round_no in range(args.rounds):
        raw = by_hand(image, args.tasks)
        ours = through_metasched(image, args.tasks, f"bench-containers-{round_no}",
                                 f"/tmp/metasched-bench-containers-{round_no}")
        ratios.append(ours / raw)
        print(f"round {round_no + 1}: docker-py by hand {raw:5.2f} containers/s | metasched {ours:5.2f} "
              f"containers/s | ratio {ours / raw:.2f}", flush=True)
    ratios.sort()
    print(f"median ratio over {args.rounds} rounds: {ratios[len(ratios) // 2]:.2f} (1.0 = no overhead)")


if __name__ == "__main__":
    main()
