"""Whether a site's user can write the attempt directories metasched makes (site_agents/batch/access.py).

The site's user is played by `nobody` through a real login prefix (``setpriv``), on this machine's
filesystem: no fake answers, so these run where this process may switch users (root), and skip elsewhere.
"""

from __future__ import annotations

import getpass
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from metasched.attempt_dir import AttemptDir
from metasched.errors import SiteAgentError
from site_agents.batch.access import needs_group_write, site_user
from site_agents.runner import CommandRunner

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to run the site's commands as nobody")


def _as_nobody(gid: int) -> CommandRunner:
    return CommandRunner(site="s", login=("setpriv", f"--reuid={NOBODY}", f"--regid={gid}", "--clear-groups"))


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory nobody can enter (pytest's own tmp_path is under a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="metasched-access-", dir="/var/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_the_same_user_needs_nothing_and_runs_no_command(shared: Path) -> None:
    runner = CommandRunner(site="s", login=("false",))  # any command would fail
    assert needs_group_write(runner, str(shared), getpass.getuser()) is False
    assert site_user(CommandRunner(site="s"), str(shared)).for_group is False


def test_a_user_of_the_directory_group_gets_group_writable_attempt_directories(shared: Path) -> None:
    runner = _as_nobody(gid=0)  # nobody, in root's group (the directory's)
    assert site_user(runner, str(shared)).name == "nobody"
    assert needs_group_write(runner, str(shared), "nobody") is True
    attempt = AttemptDir.of(str(shared), "a1").create(for_group=True)
    assert stat.S_IMODE(attempt.path.stat().st_mode) & stat.S_IWGRP
    assert runner.run(["touch", str(attempt.path / "outcome")]).ok
    assert not list(AttemptDir.root(str(shared)).glob(".access-*"))  # the probe is gone


def test_a_user_outside_the_group_is_refused_with_owner_group_mode_and_fix(shared: Path) -> None:
    with pytest.raises(SiteAgentError) as refused:
        needs_group_write(_as_nobody(gid=NOBODY), str(shared), "nobody")
    said = str(refused.value)
    assert "its commands run as 'nobody'" in said
    assert "owner root, group root, mode drwxr-xr-x" in said
    assert f"chgrp GROUP {shared}" in said
    assert not list(AttemptDir.root(str(shared)).glob(".access-*"))
