"""A command for a login prefix that hands its remote side one shell string (ssh) is quoted once, so every
argument and environment value arrives as written. The remote side here is a real ``sh -c``: what sshd
does with the string ssh sends (the login shell runs it with ``-c``)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from site_agents.runner import CommandRunner

ODD = ["a b", "$(touch /tmp/metasched-pwned)", "`id`", "'single'", '"double"', "*", "\\", "$HOME", "x;y|z&",
       "line1\nline2", "", "-n"]


@pytest.mark.parametrize("value", ODD)
def test_arguments_and_environment_arrive_as_written(value: str) -> None:
    runner = CommandRunner(site="s", login=("sh", "-c"), joins=True, env={"ODD": value})
    out = runner.run(["printf", "%s|%s", value, "$ODD"])
    assert out.ok, out.describe()
    assert out.stdout == f"{value}|$ODD"
    env = runner.run(["sh", "-c", 'printf %s "$ODD"'])
    assert env.stdout == value



def test_a_poll_is_one_command_whose_status_output_and_records_come_apart(tmp_path: Path) -> None:
    """The SSH transport's poll (site_agents.batch.ssh.STATUS_AND_FETCH) through a real ``sh -c``: the
    status command's argv arrives as written, its status, stdout and stderr come back exactly, and the
    attempts' records follow in one tar stream (only records, only of the attempts asked about)."""
    from site_agents.batch.ssh import STATUS_AND_FETCH

    attempts = tmp_path / "attempts"
    for name, files in (("t1.1", ["outcome.pkl", "cmd.out", "restart-2.json", "restart-2.tar"]),
                        ("t2.1", ["job.out", "cmd.out"]), ("t3.1", ["outcome.pkl"])):
        (attempts / name).mkdir(parents=True)
        for file in files:
            (attempts / name / file).write_text(file)
    runner = CommandRunner(site="s", login=("sh", "-c"), joins=True)
    status = ["sh", "-c", 'printf "%s\\n" "$@"; printf "no\\n\\nnewline" >&2; exit 7', "sh", *ODD]
    out = runner.run(["sh", "-c", STATUS_AND_FETCH, "sh", str(attempts), "3", "t1.1", "t2.1", "gone.1",
                      *status], binary=True)
    assert out.ok, out.describe()
    header, _, rest = out.data.partition(b"\n")
    code, printed, complained = (int(word) for word in header.split())
    assert code == 7
    assert rest[:printed].decode() == "".join(f"{value}\n" for value in ODD)
    assert rest[printed:printed + complained] == b"no\n\nnewline"
    with tarfile.open(fileobj=io.BytesIO(rest[printed + complained:])) as tar:
        names = sorted(tar.getnames())
    assert names == ["t1.1/cmd.out", "t1.1/outcome.pkl", "t1.1/restart-2.json", "t2.1/job.out"]
