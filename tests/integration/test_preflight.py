"""`metasched sites check` against a real Slurm site: passes, and failures that say how to fix them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import slurmsite
from typer.testing import CliRunner

import metasched as ms
from metasched.cli import app
from metasched.sites.preflight import check_site

pytestmark = pytest.mark.slurm


def model(site: slurmsite.SiteInfo, **options: object) -> ms.SlurmSite:
    return ms.SlurmSite(site.name, slurm_conf=site.slurm_conf, shared_dir=site.shared_dir,
                        **options)  # type: ignore[arg-type]


def test_good_site_passes_every_check(alpha: slurmsite.SiteInfo) -> None:
    checks = {c.check: c for c in check_site(model(alpha, partition="debug", account="proj1"))}
    assert list(checks) == ["reachable", "partition", "account", "smoke task", "python"]
    assert all(c.passed for c in checks.values()), checks
    assert "no accounting" in checks["account"].detail
    assert checks["reachable"].detail.startswith("2 of 2 node(s) take jobs, 16 cores")


def test_criu_check_dumps_and_restores_on_a_node_or_says_how_to_fix_it(alpha: slurmsite.SiteInfo) -> None:
    checks = {c.check: c for c in check_site(model(alpha, checkpoint_dir=slurmsite.SCRATCH))}
    assert checks["criu"].passed, checks["criu"]
    assert checks["criu"].detail.startswith("criu works: Version: 4.2")
    assert "restore" in checks["criu"].detail
    broken = {c.check: c for c in check_site(model(alpha, checkpoint_dir=slurmsite.SCRATCH, criu="/no/criu"))}
    assert not broken["criu"].passed
    assert "/no/criu" in broken["criu"].detail
    assert "install CRIU" in broken["criu"].fix


def test_failures_name_the_fix(alpha: slurmsite.SiteInfo, tmp_path: Path) -> None:
    bad_partition = check_site(model(alpha, partition="gpu"))
    assert [(c.check, c.passed) for c in bad_partition] == [("reachable", True), ("partition", False)]
    assert "sinfo --summarize" in bad_partition[-1].fix
    bad_python = {c.check: c for c in check_site(model(alpha, python="python9.9"))}
    assert not bad_python["smoke task"].passed
    assert "python9.9" in bad_python["smoke task"].fix
    down = check_site(ms.SlurmSite("nowhere", slurm_conf=str(tmp_path / "none.conf"),
                                   shared_dir=str(tmp_path)))
    assert [(c.check, c.passed) for c in down] == [("slurm_conf", False)]


def test_cli_exit_status(alpha: slurmsite.SiteInfo, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    body = f"""
[campaign]
name = "pre"

[[sites]]
kind = "slurm"
name = "alpha"
slurm_conf = "{alpha.slurm_conf}"
shared_dir = "{alpha.shared_dir}"
{{extra}}
[[tasks]]
name = "t"
command = ["true"]
"""
    path.write_text(body.replace("{extra}", ""))
    assert CliRunner().invoke(app, ["sites", "check", str(path)]).exit_code == 0
    path.write_text(body.replace("{extra}", 'partition = "gpu"'))
    assert CliRunner().invoke(app, ["sites", "check", str(path)]).exit_code == 1


def test_a_client_slurm_refuses_answers_at_once_with_slurms_words_and_the_fix(alpha: slurmsite.SiteInfo,
                                                                             tmp_path: Path) -> None:
    """Without the site's munge (or with another site's key), and with a slurm.conf missing where the
    commands run, Slurm's client retries for up to a minute; sites check answers within seconds instead."""
    conf = Path(alpha.slurm_conf).read_text()
    socket = f"{alpha.directory}/munge/munged.sock"
    cases = {
        "no munge": (conf.replace(socket, "/nonexistent/munged.sock"), "Munge encode failed", "munge"),
        "another site's key": (conf.replace(socket, socket.replace("/alpha/", "/beta/")),
                               "Zero Bytes were transmitted", "munge key is likely not the site's"),
    }
    for case, (text, said, fix) in cases.items():
        path = tmp_path / f"{case.replace(' ', '-')}.conf"
        path.write_text(text)
        started = time.monotonic()
        [check] = check_site(ms.SlurmSite("alpha", slurm_conf=str(path), shared_dir=alpha.shared_dir))
        assert time.monotonic() - started < 10, case
        assert (check.check, check.passed) == ("reachable", False), case
        assert said in check.detail, (case, check)
        assert fix in check.fix, (case, check)
    # A slurm.conf missing on the login side: the client would retry for 60 s; the agent gives up at once.
    from site_agents.slurm import slurm_agent

    agent = slurm_agent(ms.SlurmSite("alpha", slurm_conf="/nonexistent/slurm.conf",
                                     shared_dir=alpha.shared_dir,
                                     login=("env",)))
    started = time.monotonic()
    with pytest.raises(ms.SiteAgentError, match="cannot stat file /nonexistent/slurm.conf"):
        agent.start()
    assert time.monotonic() - started < 10
    agent.close()
