"""Driver for the Globus Compute resume test: `run` spreads tasks over local, alpha and an offline
Globus Compute endpoint and waits (to be SIGKILLed); `resume` finishes the campaign."""

from __future__ import annotations

import sys
import time

import metasched as ms


def work(i: int) -> int:
    time.sleep(3)
    return i * i


def main() -> None:
    journal, slurm_conf, shared_dir, address, authkey_file, mode = sys.argv[1:7]
    if mode == "run":
        sites = [ms.LocalSite("local", cores=2),
                 ms.SlurmSite("alpha", slurm_conf=slurm_conf, shared_dir=shared_dir, poll_interval=0.3),
                 ms.GlobusComputeSite("gc", offline_endpoint=address, authkey_file=authkey_file, cores=4,
                                      poll_interval=0.2)]
        campaign = ms.Campaign("gc-resume", sites=sites, journal=journal).start()
        futures = [campaign.task(name=f"work-{i}")(work)(i) for i in range(48)]
        campaign.flush()
        ms.wait(futures)
        print("FINISHED BEFORE THE KILL", flush=True)
    else:
        campaign = ms.Campaign.resume(journal)
        results = [f.result(timeout=600) for f in campaign.futures()]
        campaign.close()
        print("RESUMED", sum(results), flush=True)


if __name__ == "__main__":
    main()
