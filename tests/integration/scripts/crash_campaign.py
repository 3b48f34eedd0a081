"""Driver for the crash test: `run` submits 200 tasks and waits (to be SIGKILLed); `resume` finishes them."""

from __future__ import annotations

import os
import sys
import time

import metasched as ms


def work(i: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"{i}\n")
    time.sleep(0.05)
    return i * 10


def main() -> None:
    journal, log, mode = sys.argv[1:4]
    if mode == "run":
        campaign = ms.Campaign("crash", sites=[ms.LocalSite("local", cores=2)], journal=journal).start()
        task = campaign.task(retries=0)(work)
        futures = [task(i, log) for i in range(200)]
        campaign.flush()
        print(f"SUBMITTED {len(futures)} pid={os.getpid()}", flush=True)
        ms.wait(futures)
        print("FINISHED BEFORE THE KILL", flush=True)
        campaign.close()
    else:
        campaign = ms.Campaign.resume(journal)
        results = [f.result(timeout=300) for f in campaign.futures()]
        campaign.close()
        print(f"RESUMED {len(results)} {sum(results)}", flush=True)


if __name__ == "__main__":
    main()
