"""Run a small campaign on an existing Ray cluster (address given on the command line)."""

from __future__ import annotations

import sys

import metasched as ms


def main() -> None:
    address, journal = sys.argv[1:3]
    with ms.Campaign("joined", sites=[ms.LocalSite("local", cores=2)], journal=journal,
                     address=address) as c:
        total = c.task()(sum)([c.task()(abs)(-i) for i in range(10)])
        print(f"TOTAL {total.result(timeout=120)}", flush=True)


if __name__ == "__main__":
    main()
