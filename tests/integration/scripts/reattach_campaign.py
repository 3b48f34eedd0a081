"""Driver for the re-attach tests: `run` submits Slurm jobs (at alpha, or over SSH) and waits (to be
SIGKILLed); `resume` ends it."""

from __future__ import annotations

import sys

import metasched as ms


def main() -> None:
    journal, slurm_conf, shared_dir, mode = sys.argv[1:5]
    if mode == "run":
        site = ms.SlurmSite("alpha", slurm_conf=slurm_conf, shared_dir=shared_dir, poll_interval=0.3)
        if len(sys.argv) > 5:  # a site reached over SSH: HOST SSH_CONFIG
            host, ssh_config = sys.argv[5:7]
            site = ms.SlurmSite("remote", slurm_conf=slurm_conf, shared_dir=shared_dir, poll_interval=0.3,
                                transport="ssh", host=host, ssh_options=("-F", ssh_config))
        campaign = ms.Campaign("reattach", sites=[site], journal=journal).start()
        futures = [campaign.command(["python3", "-c", "import sys, time; time.sleep(10); print(sys.argv[1])",
                                     str(i)]) for i in range(6)]
        campaign.flush()
        print("SUBMITTED", flush=True)
        ms.wait(futures)
        print("FINISHED BEFORE THE KILL", flush=True)
    else:
        campaign = ms.Campaign.resume(journal)
        outputs = [f.result(timeout=300).stdout.strip() for f in campaign.futures()]
        campaign.close()
        print("RESUMED " + " ".join(outputs), flush=True)


if __name__ == "__main__":
    main()
