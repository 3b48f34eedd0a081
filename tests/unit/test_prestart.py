"""The driver's side of submitting pilot blocks while the Ray head starts (metasched.prestart).

Which campaigns do it is decided before Ray is imported (in this process); what happens to a site that
does not answer runs in a child process, since fixing a joinable head's address imports Ray for joining.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import metasched as ms
from metasched.prestart import prestart

CHILD = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
import metasched as ms
from metasched.prestart import prestart
site = ms.SlurmSite("gone", login=("false",), shared_dir=sys.argv[1], mode="pilot")
early = prestart([site, ms.LocalSite("local")], "127.0.0.2")
print("HEAD", early.head, early.port)
try:
    early.blocks()
except ms.SiteAgentError as exc:
    print("FAILED", exc.site, "|", exc)
early.abandon()
"""


def pilot_site(tmp_path: Path, **options: object) -> ms.SlurmSite:
    return ms.SlurmSite("kappa", slurm_conf="/etc/slurm.conf", shared_dir=str(tmp_path), mode="pilot",
                        **options)


def test_only_pilot_sites_with_first_blocks_and_a_head_address_known_in_advance_prestart(
        tmp_path: Path) -> None:
    assert pilot_site(tmp_path).prestarts()
    assert not pilot_site(tmp_path, init_blocks=0).prestarts()
    assert not ms.SlurmSite("alpha", slurm_conf="/etc/slurm.conf", shared_dir=str(tmp_path)).prestarts()
    assert prestart([ms.LocalSite("local")], "127.0.0.2") is None
    assert prestart([pilot_site(tmp_path)], None) is None, "no joinable head"
    assert prestart([pilot_site(tmp_path)], "auto") is None, "Ray picks the address as it starts"
    assert prestart([pilot_site(tmp_path, init_blocks=0)], "127.0.0.2") is None


def test_a_site_that_does_not_answer_fails_the_start_once_and_the_token_made_is_private(
        tmp_path: Path) -> None:
    home, shared = tmp_path / "home", tmp_path / "shared"
    home.mkdir()
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")} | {"HOME": str(home)}
    ran = subprocess.run([sys.executable, "-c", CHILD, str(shared)], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    assert ran.returncode == 0, ran.stderr[-3000:]
    head = next(line.split() for line in ran.stdout.splitlines() if line.startswith("HEAD"))
    assert head[1] == f"127.0.0.2:{head[2]}"
    assert int(head[2]) > 0
    failed = next(line for line in ran.stdout.splitlines() if line.startswith("FAILED"))
    assert failed.startswith("FAILED gone | site gone"), failed  # the site's own error, raised once
    token = home / ".ray" / "auth_token"
    assert token.read_text().strip(), "the head's token was made before the head starts"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().strip() not in ran.stdout + ran.stderr
