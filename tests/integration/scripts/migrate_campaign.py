"""Driver for the crash-during-migration test: `run` starts a checkpointable counter and waits (to be
SIGKILLed while it migrates); `resume` finishes the campaign and prints the counter's output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for tests.integration

import metasched as ms  # noqa: E402
from tests.integration.counter import COUNTER  # noqa: E402


def main() -> None:
    journal, sites_json, scratch, mode = sys.argv[1:5]
    if mode == "run":
        sites = [ms.SlurmSite(name, slurm_conf=conf, shared_dir=shared, poll_interval=0.3,
                              checkpoint_dir=scratch) for name, conf, shared in json.loads(sites_json)]
        campaign = ms.Campaign("crash-migrate", sites=sites, journal=journal).start()
        counter = campaign.command(["python3", "-c", COUNTER, "100"], checkpoint="criu", name="counter",
                                   sites=[s.name for s in sites])
        campaign.flush()
        print("SUBMITTED", flush=True)
        counter.result()
        print("FINISHED BEFORE THE KILL", flush=True)
    else:
        campaign = ms.Campaign.resume(journal)
        (counter,) = campaign.futures()
        print("OUTPUT " + json.dumps(counter.result(timeout=300).stdout), flush=True)
        campaign.close()


if __name__ == "__main__":
    main()
