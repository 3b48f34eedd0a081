"""Driver for the hedging crash test: `run` submits 4 commands over alpha and beta and waits (its scheduler
dies right after submitting its first hedges when METASCHED_FAULT=after-hedge:beta); `resume` finishes."""

from __future__ import annotations

import json
import sys

import metasched as ms

HEDGE_AFTER_S = 6.0
TASK = ("import os, sys, time\n"
        "for d in sys.argv[1:-1]:\n"
        "    if os.path.isdir(d): open(os.path.join(d, sys.argv[-1]), 'a').write('ran\\n')\n"
        "time.sleep(2); print(sys.argv[-1])")


def task_argv(marker_dirs: list[str], i: int) -> list[str]:
    """A command that notes each run in whichever marker directory its site sees, then prints `i`."""
    return ["python3", "-c", TASK, *marker_dirs, str(i)]


def main() -> None:
    journal, sites_json, dirs_json, mode = sys.argv[1:5]
    if mode == "run":
        sites = [ms.SlurmSite(**options) for options in json.loads(sites_json)]
        policy = ms.DefaultPolicy(hedge_after_s=HEDGE_AFTER_S, hedge_budget=1.0)
        campaign = ms.Campaign("hedge", sites=sites, journal=journal, policy=policy).start()
        futures = [campaign.command(task_argv(json.loads(dirs_json), i), name=f"h{i}") for i in range(4)]
        campaign.flush()
        print("SUBMITTED", flush=True)
        ms.wait(futures)  # returns once the dead scheduler fails them
    else:
        campaign = ms.Campaign.resume(journal)  # the journaled policy: hedging as before
        outputs = sorted(f.result(timeout=300).stdout.strip() for f in campaign.futures())
        campaign.close()
        print("RESUMED " + " ".join(outputs), flush=True)


if __name__ == "__main__":
    main()
