"""Driver for the crash-during-migration test: `run` starts a checkpointable counter and waits (to be
SIGKILLed while it migrates); `resume` finishes the campaign and prints the counter's output."""

from __future__ import annotations

import json
import sys

import metasched as ms

COUNTER = """
import sys, time
state = bytearray(50 * 2**20)
t0 = time.time()
for i in range(int(sys.argv[1])):
    state[i * 4096 % len(state)] = i % 256
    print(i, t0, flush=True)
    time.sleep(0.1)
print("done", flush=True)
"""


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
