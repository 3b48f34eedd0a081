"""The main job of `make demo`: a small campaign on the embedded default site (this machine, through Ray).

Today this exercises the embedded Ray runtime the local site is built on; the campaign API arrives with
the core scheduler (issue 3) and this demo grows with it into a multi-site run.
"""

from __future__ import annotations

import time

import ray

import metasched


@ray.remote(num_cpus=1)
def square(x: int) -> int:
    return x * x


def main() -> None:
    start = time.monotonic()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        total = sum(ray.get([square.remote(i) for i in range(100)]))
    finally:
        ray.shutdown()
    print(f"metasched {metasched.__version__} demo: sum of squares 0..99 = {total} "
          f"({time.monotonic() - start:.1f} s on the embedded local site)")


if __name__ == "__main__":
    main()
