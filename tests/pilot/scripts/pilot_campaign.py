"""A pilot campaign run as its own process, so a test can SIGKILL it (and its Ray head) and resume it.

Usage: pilot_campaign.py JOURNAL LOG run SITE_JSON | pilot_campaign.py JOURNAL LOG resume
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import metasched as ms

HEAD_IP = "127.0.0.2"
TASKS = 24


def work(i: int, log: str) -> int:
    time.sleep(2.0)
    with open(log, "a") as out:
        out.write(f"{i}\n")
    return i * 10


def main(journal: str, log: str, mode: str, *rest: str) -> None:
    if mode == "run":
        site = ms.SlurmSite(**json.loads(rest[0]))
        campaign = ms.Campaign("pilot-crash", sites=[site], journal=journal, ray_node_ip=HEAD_IP).start()
        task = campaign.task(retries=0)(work)
        futures = [task(i, log) for i in range(TASKS)]
        ms.wait(futures)
        print("FINISHED BEFORE THE KILL", flush=True)
        return
    campaign = ms.Campaign.resume(Path(journal), ray_node_ip=HEAD_IP)
    results = [f.result(timeout=600) for f in campaign.futures()]
    campaign.close()
    print(f"RESUMED {len(results)} {sum(results)}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
