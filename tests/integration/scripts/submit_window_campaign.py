"""Driver for the submit-window test: `run` submits 3 commands and waits (its scheduler dies right after
its submit call when METASCHED_FAULT=after-submit:<site> is set); `resume` finishes the campaign."""

from __future__ import annotations

import json
import sys

import metasched as ms

TASK = ("import pathlib, sys, time; pathlib.Path(sys.argv[1]).open('a').write('ran\\n'); time.sleep(4); "
        "print(sys.argv[2])")


def main() -> None:
    journal, site_json, marker_dir, mode = sys.argv[1:5]
    if mode == "run":
        options = json.loads(site_json)
        kind = {"slurm": ms.SlurmSite, "gridengine": ms.GridEngineSite}[options.pop("kind")]
        campaign = ms.Campaign("window", sites=[kind(**options)], journal=journal).start()
        futures = [campaign.command(["python3", "-c", TASK, f"{marker_dir}/{i}", str(i)], name=f"w{i}")
                   for i in range(3)]
        campaign.flush()
        print("SUBMITTED", flush=True)
        ms.wait(futures)  # returns once the dead scheduler fails them
    else:
        campaign = ms.Campaign.resume(journal)
        outputs = sorted(f.result(timeout=300).stdout.strip() for f in campaign.futures())
        campaign.close()
        print("RESUMED " + " ".join(outputs), flush=True)


if __name__ == "__main__":
    main()
