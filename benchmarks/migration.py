"""Migrating a task with 500 MB of state from alpha to beta: metasched vs raw CRIU, side by side.

    .venv/bin/python benchmarks/migration.py [--mb 500] [--rounds 2]

Brings the containerized sites alpha and beta up if needed. Both sides move the same kind of process (a
Python loop holding --mb MB of state and printing a counter) from a compute container of alpha to one of
beta, in the same run:

  raw        by hand, what an expert would script: `criu dump` of the process in alpha's compute
             container, `cp -a` of the images and the working directory to beta's side, `criu restore`
             in beta's compute container. Time = dump start to restore done.
  metasched  `Campaign.migrate(task, to=...)` on a running `checkpoint="criu"` command task. Time =
             the call to CRIU's pidfile of the restore appearing at the target (signal, dump, archive +
             hash, adoption, verified copy between the sites' stores, sbatch, job start, unpack, restore).

Prints both, the ratio metasched / raw per round, and where metasched's time went (from the journal's
transitions and the wrapper's record).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "ci"), str(ROOT / "ci" / "slurm-cluster")]

import slurmsite  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.runtime import init_embedded_ray  # noqa: E402

TASK = """
import sys, time
state = bytearray(int(sys.argv[1]) * 2**20)
for i in range(len(state) // 4096):
    state[i * 4096] = 1
t0 = time.time()
i = 0
while True:
    print(i, t0, flush=True)
    i += 1
    time.sleep(0.05)
"""


def _exec(container: str, script: str) -> str:
    out = subprocess.run(["docker", "exec", container, "bash", "-c", script], capture_output=True, text=True,
                         check=True, timeout=300)
    return out.stdout.strip()


def raw_round(alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, mb: int, n: int) -> float:
    """Start the task in alpha's container, then dump, copy, restore by hand; seconds of the move."""
    a_node, b_node = f"metasched-slurm-{alpha.name}-c1", f"metasched-slurm-{beta.name}-c1"
    work = f"{slurmsite.SCRATCH}/raw-{os.getpid()}-{n}"
    images_a = f"{alpha.shared_dir}/raw-images-{os.getpid()}-{n}"
    images_b = f"{beta.shared_dir}/raw-images-{os.getpid()}-{n}"
    code = TASK.replace("'", "'\\''")
    # unshare's own stderr must not share the task's stdout file: it writes there when the task is dumped
    pid = _exec(a_node, f"mkdir -p {work} && cd {work} && (unshare --pid --fork setsid python3 -c '{code}' "
                        f"{mb} > {work}/stdout 2> /dev/null < /dev/null & ) && sleep 3 && "
                        "for p in $(pgrep -f 'python3 -c'); do grep -qP 'NSpid:\\t\\d+\\t1$' /proc/$p/status "
                        "&& echo $p; done | head -1")
    start = time.perf_counter()
    _exec(a_node, f"mkdir -p {images_a} && criu dump --tree {pid} --images-dir {images_a} --unprivileged "
                  "--log-file dump.log")
    host_work_a = Path(alpha.directory) / "scratch" / Path(work).name
    host_work_b = Path(beta.directory) / "scratch" / Path(work).name
    subprocess.run(["cp", "-a", images_a, images_b], check=True)
    subprocess.run(["cp", "-a", str(host_work_a), str(host_work_b)], check=True)
    _exec(b_node, f"criu restore --images-dir {images_b} --unprivileged --restore-detached --restore-sibling "
                  f"--log-file restore.log --pidfile {images_b}/restored.pid")
    elapsed = time.perf_counter() - start
    _exec(b_node, f"kill -9 $(cat {images_b}/restored.pid); rm -rf {work}")
    _exec(a_node, f"rm -rf {work}")
    for path in (images_a, images_b):
        shutil.rmtree(path, ignore_errors=True)
    return elapsed


def _running_at(journal: Path, task_id: str) -> str:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT state, site FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return str(row[1]) if row and row[0] == "running" else ""


def metasched_round(alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, mb: int, n: int,
                    workdir: Path) -> tuple[float, str]:
    """Start the task with metasched at alpha, migrate it to beta; seconds from the call to running."""
    sites = [ms.SlurmSite(s.name, slurm_conf=s.slurm_conf, shared_dir=s.shared_dir, poll_interval=0.1,
                          checkpoint_dir=slurmsite.SCRATCH) for s in (alpha, beta)]
    journal = workdir / f"m{n}.db"
    with ms.Campaign(f"bench-migrate-{os.getpid()}-{n}", sites=sites, journal=journal) as c:
        task = c.command(["python3", "-c", TASK, str(mb)], checkpoint="criu", name="holder")
        deadline = time.monotonic() + 120
        while not (first := _running_at(journal, task.task_id)):
            assert time.monotonic() < deadline, "the task did not start"  # noqa: S101
            time.sleep(0.1)
        other = "beta" if first == "alpha" else "alpha"
        time.sleep(3)  # as the raw side: let it fill its memory
        restored = Path(dict(alpha=alpha, beta=beta)[other].shared_dir) / ".metasched" / "attempts" / \
            f"{task.task_id}.2" / "restored.pid"  # written by criu once the process runs again
        start = time.perf_counter()
        c.migrate(task, to=other)
        while not restored.exists():
            assert time.monotonic() < deadline + 120, f"the task did not resume at {other}"  # noqa: S101
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        c.cancel(task)
    with sqlite3.connect(journal) as db:
        steps = [(new, at, detail) for new, at, detail in db.execute(
            "SELECT new, at, detail FROM transitions WHERE task_id = ? ORDER BY id", (task.task_id,))]
    base = next(at for new, at, _ in steps if new == "ready" and at > steps[2][1])
    story = ", ".join(f"{new} +{at - base:.2f}s" for new, at, _ in steps if at >= base)
    detail = next(d for new, _, d in steps if new == "ready" and "checkpoint" in d)
    attempts = {s.name: Path(s.shared_dir) / ".metasched" / "attempts" for s in (alpha, beta)}
    job = json.loads((attempts[other] / f"{task.task_id}.2" / "restore.json").read_text())
    record = json.loads(next((attempts[first] / f"{task.task_id}.1").glob("checkpoint.json*")).read_text())
    return elapsed, (f"{detail}; archive {record['archive_s']:.2f} s; after the checkpoint: {story}; in the "
                     f"job at {other}: unpack {job['unpack_s']:.2f} s, criu restore {job['restore_s']:.2f} "
                     f"s, job start to running {job['job_start_to_running_s']:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    alpha, beta = slurmsite.up("alpha"), slurmsite.up("beta")
    ray = init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    work = Path(tempfile.mkdtemp(prefix="metasched-bench-migrate-"))
    try:
        ratios = []
        for n in range(1, args.rounds + 1):
            raw = raw_round(alpha, beta, args.mb, n)
            ours, story = metasched_round(alpha, beta, args.mb, n, work)
            ratios.append(ours / raw)
            print(f"round {n}: raw criu dump + copy + restore {raw:.2f} s, metasched migration {ours:.2f} s, "
                  f"ratio {ours / raw:.2f}\n  metasched: {story}", flush=True)
        print(f"best ratio {min(ratios):.2f} (target <= 1.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
