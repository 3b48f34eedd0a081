"""A command for a login prefix that hands its remote side one shell string (ssh) is quoted once, so every
argument and environment value arrives as written. The remote side here is a real ``sh -c``: what sshd
does with the string ssh sends (the login shell runs it with ``-c``)."""

from __future__ import annotations

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

