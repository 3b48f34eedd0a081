"""Writes ``campaign.db``: a journal in schema version 2, input of tests/unit/test_journal_upgrade.py.

It was made by metasched at commit dd73f53 (the last to write schema 2) and is kept as that version wrote
it; this script records how, and only works with that version:

    git worktree add /tmp/v2 dd73f53 && cd /tmp/v2 && .venv/bin/python tests/data/journal-v2/make.py OUT.db

One campaign on a local site: Python tasks that return, print and fail (one retried into a new task), a
command that fails with output, a dependency chain, a task carrying tags and resources, and the failed command
retried (`Campaign.retry`) as a new task that fails again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import metasched as ms


def square(x: int) -> int:
    return x * x


def shout(text: str) -> str:
    print(f"said {text}")
    return text.upper()


def broken(x: int) -> int:
    print("about to fail")
    raise ValueError(f"no {x}")


def add(a: int, b: int) -> int:
    return a + b


def main(path: Path) -> None:
    with ms.Campaign("upgrade-me", sites=[ms.LocalSite("local", cores=2)], journal=path) as c:
        squares = [c.task(square, name=f"square-{i}")(i) for i in range(3)]
        total = c.task(add, name="total", cores=1, memory="64M", tags={"kind": "sum"})(squares[1], squares[2])
        said = c.task(shout, name="shout")("hi")
        failed = c.task(broken, name="broken", retries=1)(7)
        command = c.command(["sh", "-c", "echo out; echo err >&2; exit 3"], name="exit-3")
        ms.wait([*squares, total, said, failed, command])
        assert total.result() == 5
        assert said.result() == "HI"
        assert failed.exception() is not None
        assert command.exception() is not None
        [again] = c.retry(["exit-3"])
        assert again.exception() is not None


if __name__ == "__main__":
    main(Path(sys.argv[1]))
