"""100 MB between this machine and a site reached over SSH: metasched's verified copy vs raw ssh and scp.

    .venv/bin/python benchmarks/ssh_transfer.py [--mb 100] [--rounds 3]

Brings the SSH test site omicron up (ci/ssh-login) if needed. metasched: the transfer worker (the Ray actor
the scheduler uses, ``RayTransferRunner``) copies a stored object of that size from a file store here into
the site's store (``SshFileStore``: ssh reads the file and sends it through the worker's SSH master while
the worker checks its xxh3; the site's size is compared with what was sent, then the object is moved into
place) and back (ssh writes the file here; its xxh3 is checked). Raw, through a master opened once:
``ssh host 'cat > f' < file`` and ``ssh host cat f > file``, and ``scp`` both ways, each into a new file as
metasched's copies are. Each round times every variant on fresh bytes; the table prints each round's
seconds and the ratio metasched / raw ssh (target <= 1.3, issue 19).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), *(str(ROOT / "ci" / sub) for sub in ("", "slurm-cluster", "ssh-login"))]

import slurmsite  # noqa: E402
import sshlogin  # noqa: E402

from metasched.data.objects import DataRef, evict, put_blob  # noqa: E402
from metasched.data.stores import FileStore, StoreSpec  # noqa: E402
from metasched.data.transfers import RayTransferRunner  # noqa: E402
from metasched.runtime import init_embedded_ray  # noqa: E402
from tests.integration.ssh_sites import slurm_ssh_site  # noqa: E402


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def copied(runner: RayTransferRunner, ref: DataRef, target: StoreSpec) -> DataRef:
    """One copy through the transfer worker, waited for."""
    handle = runner.start(ref, target)
    while not (done := runner.finished([handle])):
        time.sleep(0.005)
    [(_, result)] = done
    if result.ref is None:
        raise RuntimeError(result.error)
    return result.ref


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    site = slurmsite.up("omicron", ssh=True, cpus=4)
    work = Path(tempfile.mkdtemp(prefix="ssh-transfer-"))
    os.environ.setdefault("METASCHED_HOME", str(work / "home"))
    init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    here, remote = FileStore(str(work / "store")), slurm_ssh_site(site).default_store()
    runner = RayTransferRunner()
    host = sshlogin.alias(site.name)
    config = str(sshlogin.client_config(site.directory))
    ssh = ["ssh", "-F", config, "-o", f"ControlPath={work / 'master'}"]
    subprocess.run([*ssh, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-N", "-f", host], check=True,
                   timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    raw_file, back_file = work / "raw.bin", work / "back.bin"
    remote_dir = f"{remote.path}/raw-benchmark"  # type: ignore[union-attr]
    subprocess.run([*ssh, host, "--", f"mkdir -p {remote_dir}"], check=True, timeout=30)
    scp = ["scp", "-q", "-F", config, "-o", f"ControlPath={work / 'master'}"]
    evict(copied(runner, put_blob(here, b"warm", object_id="warm"), remote))  # the worker's master is open
    print(f"{args.mb} MB, this machine <-> {host} (one SSH connection each side)")
    print("round | to site: metasched  raw ssh  scp  ratio | from site: metasched  raw ssh  scp  ratio")
    try:
        for n in range(args.rounds):
            remote_file = f"{remote_dir}/{n}.bin"  # a new file, as metasched's copies are
            blob = os.urandom(args.mb * 2**20)
            raw_file.write_bytes(blob)
            ref = put_blob(here, blob, object_id=f"bench-{n}")
            del blob
            there: list[DataRef] = []
            ours_up = timed(lambda: there.append(copied(runner, ref, remote)))  # noqa: B023
            ours_down = timed(lambda: evict(copied(runner, there[0], here)))  # noqa: B023
            with raw_file.open("rb") as source:
                raw_up = timed(lambda: subprocess.run([*ssh, host, "--", f"cat > {remote_file}"],  # noqa: B023
                                                      stdin=source, check=True, timeout=300))
            with back_file.open("wb") as sink:
                raw_down = timed(lambda: subprocess.run([*ssh, host, "--", f"cat {remote_file}"],  # noqa: B023
                                                        stdout=sink, check=True, timeout=300))
            subprocess.run([*ssh, host, "--", f"rm {remote_file}"], check=True, timeout=30)
            scp_up = timed(lambda: subprocess.run([*scp, str(raw_file), f"{host}:{remote_file}"],  # noqa: B023
                                                  check=True, timeout=300))
            back_file.unlink()
            scp_down = timed(lambda: subprocess.run([*scp, f"{host}:{remote_file}", str(back_file)],  # noqa: B023
                                                    check=True, timeout=300))
            back_file.unlink()
            evict(there[0])
            evict(ref)
            print(f"{n + 1:5d} | {ours_up:8.2f} s {raw_up:7.2f} s {scp_up:5.2f} s {ours_up / raw_up:5.2f} | "
                  f"{ours_down:8.2f} s {raw_down:7.2f} s {scp_down:5.2f} s {ours_down / raw_down:5.2f}")
    finally:
        subprocess.run([*ssh, host, "--", f"rm -rf {remote_dir}"], capture_output=True, timeout=30,
                       check=False)
        subprocess.run([*ssh, "-O", "exit", host], capture_output=True, timeout=30, check=False)
        runner.close()


if __name__ == "__main__":
    main()
