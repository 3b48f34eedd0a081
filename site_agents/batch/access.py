"""Whether the user a site's commands run as can write the attempt directories metasched makes.

metasched writes each attempt's directory here and the job writes its outcome there, as the user the site's
commands run as. With a login prefix that user may not be this process's (``docker exec -u alice``,
``sudo -u``): then the directories must be writable through a group both users are in, as a project
directory is (group-owned, setgid, group-writable). This module finds which case holds, by asking the
site to ``test -w`` a directory made the ordinary way and then one made group-writable, and says what to
change when neither works.
"""

from __future__ import annotations

import getpass
import grp
import pwd
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from metasched.attempt_dir import AttemptDir, group_writable
from metasched.errors import SiteAgentError
from site_agents.runner import CommandRunner


@dataclass(frozen=True, slots=True)
class SiteUser:
    """Who the site's commands run as, and whether attempt directories must be writable by their group."""

    name: str
    for_group: bool


def site_user(runner: CommandRunner, shared_dir: str) -> SiteUser:
    """Ask the site who its commands run as (``id -un``) and whether that user writes what we make."""
    name = runner.whoami()
    return SiteUser(name=name, for_group=needs_group_write(runner, shared_dir, name))


def needs_group_write(runner: CommandRunner, shared_dir: str, remote_user: str) -> bool:
    """Whether attempt directories must be group-writable for `remote_user`; raise if that is not enough.

    No command runs when the site's user is this process's own.
    """
    if remote_user == getpass.getuser():
        return False
    root = AttemptDir.root(shared_dir)
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".access-{uuid.uuid4().hex[:12]}"
    probe.mkdir()
    try:
        if runner.run(["test", "-w", str(probe)]).ok:
            return False
        group_writable(probe)
        if runner.run(["test", "-w", str(probe)]).ok:
            return True
        raise SiteAgentError(
            f"site {runner.site}: its commands run as {remote_user!r} (metasched runs as "
            f"{getpass.getuser()!r}), and {remote_user!r} cannot write the directories metasched makes in "
            f"shared_dir ({_described(probe)}). "
            f"Give shared_dir a group both users are in, with the setgid bit (chgrp GROUP {shared_dir}; "
            "chmod 2770 it), so every directory made in it is that group's; or run the commands as the same "
            "user.",
            site=runner.site)
    finally:
        probe.rmdir()


def group_of(path: Path) -> str:
    """A file's group by name, or its id where this machine has no name for it."""
    gid = path.stat().st_gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _described(path: Path) -> str:
    """The parent's owner, group and mode, as `ls -l` shows them (ids where this machine has no name)."""
    info = path.parent.stat()
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = f"uid {info.st_uid}"
    return f"{path.parent}: owner {owner}, group {group_of(path.parent)}, mode {stat.filemode(info.st_mode)}"
