"""Campaign files: every problem reported at once, with file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metasched.cli import app
from metasched.config import CampaignFileError, load_campaign_file
from metasched.placement import DefaultPolicy

GOOD = """\
[campaign]
name = "demo"

[[sites]]
kind = "local"
name = "local"

[[tasks]]
name = "sim-{x}-{y}"
command = ["echo", "{x}", "{y}"]
sweep = { x = { range = [0, 3] }, y = ["a", "b"] }

[[tasks]]
name = "collect"
command = ["echo", "done"]
depends_on = ["sim-{x}-{y}"]
"""

BAD = """\
[campaign]
name = "demo"
colour = "blue"

[[sites]]
kind = "local"
name = "local"

[[sites]]
kind = "slurm"
name = "alpha"
slurm_conf = "/nonexistent/slurm.conf"
shared_dir = "/nonexistent/shared"
max_jobs = 0

[[tasks]]
name = "a"
command = ["true"]
depends_on = ["b"]

[[tasks]]
name = "b"
command = ["true"]
depends_on = ["a"]
sites = ["nowhere"]

[[tasks]]
name = "c"
command = ["true"]
depends_on = ["missing"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_file_expands_sweeps_and_orders_dependencies(tmp_path: Path) -> None:
    loaded = load_campaign_file(write(tmp_path, GOOD))
    names = [t.name for t in loaded.tasks]
    assert names[-1] == "collect"
    assert sorted(names[:-1]) == sorted(f"sim-{x}-{y}" for x in range(3) for y in "ab")
    assert len(loaded.dependencies["collect"]) == 6
    sim = loaded.tasks[0]
    assert [sim.render(a) for a in sim.model.command] == ["echo", str(sim.values["x"]), sim.values["y"]]
    assert loaded.journal == (tmp_path / "demo.db").resolve()


def test_hedging_settings_in_a_campaign_file_make_the_default_policy_with_them(tmp_path: Path) -> None:
    assert load_campaign_file(write(tmp_path, GOOD)).spec.campaign.placement_policy() == "default"
    text = GOOD.replace('name = "demo"', 'name = "demo"\nhedge_after_s = 30\nhedge_budget = 0.25', 1)
    policy = load_campaign_file(write(tmp_path, text)).spec.campaign.placement_policy()
    assert isinstance(policy, DefaultPolicy)
    assert (policy.hedge_after_s, policy.hedge_budget(8)) == (30.0, 2)


def test_structural_problems_are_all_reported_with_lines(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(CampaignFileError) as excinfo:
        load_campaign_file(path)
    problems = excinfo.value.problems
    assert f"{path}:3: campaign.colour: Extra inputs are not permitted" in problems
    assert any(p.startswith(f"{path}:14: sites[1].max_jobs:") and "greater than or equal to 1" in p
               for p in problems), problems


def test_semantic_problems_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, BAD.replace('colour = "blue"\n', "").replace("max_jobs = 0\n", ""))
    with pytest.raises(CampaignFileError) as excinfo:
        load_campaign_file(path)
    text = "\n".join(excinfo.value.problems)
    assert f"{path}:11: sites[1].slurm_conf: file /nonexistent/slurm.conf does not exist" in text
    assert f"{path}:12: sites[1].shared_dir: directory /nonexistent/shared does not exist" in text
    assert "tasks[1].sites: unknown site 'nowhere'" in text
    assert "tasks[2].depends_on: depends on 'missing', which is not a task of this file" in text
    assert "dependencies form a cycle: a -> b -> a" in text


def test_sweep_that_does_not_expand_and_duplicate_names(tmp_path: Path) -> None:
    text = GOOD.replace('command = ["echo", "{x}", "{y}"]', 'command = ["echo", "{z}"]')
    text += '\n[[tasks]]\nname = "collect"\ncommand = ["true"]\n'
    with pytest.raises(CampaignFileError) as excinfo:
        load_campaign_file(write(tmp_path, text))
    joined = "\n".join(excinfo.value.problems)
    assert "tasks[0].sweep: sweep does not expand the name or command: KeyError('z')" in joined
    assert "task name 'collect' occurs more than once after sweeps" in joined


def test_cli_config_check_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["config", "check", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0
    assert "7 task(s) after sweeps" in ok.stdout
    bad = runner.invoke(app, ["config", "check", str(write(tmp_path, BAD))])
    assert bad.exit_code == 2
    assert "campaign.colour" in bad.output
    missing = runner.invoke(app, ["config", "check", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2


def test_stores_in_a_campaign_file_become_store_specs(tmp_path: Path) -> None:
    from metasched.data.stores import EndpointStore, FileStore, RedisStore

    path = tmp_path / "c.toml"
    path.write_text(GOOD.replace('name = "demo"', 'name = "demo"\ndata_threshold = 5000\n'
                                 'store = { kind = "file", path = "/data/demo" }')
                    .replace('name = "local"', 'name = "local"\nstore = { kind = "redis", port = 6400 }'))
    loaded = load_campaign_file(path)
    assert loaded.spec.campaign.data_threshold == 5000
    assert loaded.spec.campaign.store == FileStore("/data/demo")
    assert loaded.sites[0].store == RedisStore(6400)
    uuid = "c84f791d-8c03-42e0-90c9-d1124bf1ce7a"
    path.write_text(GOOD.replace('name = "local"', f'name = "local"\nstore = {{ kind = "endpoint", '
                                f'endpoint = "{uuid}", proxystore_dir = "/shared/ps" }}'))
    assert load_campaign_file(path).sites[0].store == EndpointStore(uuid, proxystore_dir="/shared/ps")


def test_pbs_sites_in_a_campaign_file(tmp_path: Path) -> None:
    from site_agents.pbs.config import PBSSite

    path = tmp_path / "c.toml"
    path.write_text(GOOD.replace('kind = "local"\nname = "local"',
                                 f'kind = "pbs"\nname = "cluster"\ndialect = "torque"\n'
                                 f'shared_dir = "{tmp_path}"\nlogin = ["sudo", "-u", "me"]\nqueue = "batch"'))
    [site] = load_campaign_file(path).sites
    assert site == PBSSite("cluster", shared_dir=str(tmp_path), dialect="torque", login=("sudo", "-u", "me"),
                           queue="batch")
    path.write_text(GOOD.replace('kind = "local"\nname = "local"',
                                 'kind = "pbs"\nname = "cluster"\ndialect = "lsf"\nshared_dir = "/nope"'))
    with pytest.raises(CampaignFileError) as caught:
        load_campaign_file(path)
    assert "sites[0].dialect: Input should be 'openpbs' or 'torque'" in "\n".join(caught.value.problems)
    path.write_text(GOOD.replace('kind = "local"\nname = "local"',
                                 'kind = "pbs"\nname = "cluster"\nshared_dir = "/nope"'))
    with pytest.raises(CampaignFileError) as caught:
        load_campaign_file(path)
    assert "sites[0].shared_dir: directory /nope does not exist" in "\n".join(caught.value.problems)


def test_pbs_site_refuses_an_unknown_dialect() -> None:
    from metasched.errors import ConfigurationError
    from site_agents.pbs.config import PBSSite

    with pytest.raises(ConfigurationError,
                       match="pbs site x: dialect must be one of 'openpbs', 'torque', got 'sge'"):
        PBSSite("x", shared_dir="/tmp", dialect="sge")


def test_login_through_ssh_is_refused_with_the_reason() -> None:
    from metasched.errors import ConfigurationError
    from site_agents.slurm.config import SlurmSite

    with pytest.raises(ConfigurationError,
                       match='login through ssh is not supported: ssh joins .* transport = "ssh"'):
        SlurmSite("x", shared_dir="/tmp", login=("ssh", "login1"))


def test_ssh_transport_fields_are_checked_together() -> None:
    from metasched.errors import ConfigurationError
    from site_agents.slurm.config import SlurmSite

    site = SlurmSite("x", shared_dir="/scratch/x", transport="ssh", host="login1")
    assert site.local_paths() == []  # the shared directory is the site's, not this machine's
    with pytest.raises(ConfigurationError, match='transport = "ssh" needs host'):
        SlurmSite("x", shared_dir="/tmp", transport="ssh")
    with pytest.raises(ConfigurationError, match="needs host"):
        SlurmSite("x", shared_dir="/tmp", transport="ssh", host="-oProxyCommand=evil")
    with pytest.raises(ConfigurationError, match="host, ssh_options, ssh_control_path and local_dir are for"):
        SlurmSite("x", shared_dir="/tmp", host="login1")
    with pytest.raises(ConfigurationError, match="login and transport"):
        SlurmSite("x", shared_dir="/tmp", transport="ssh", host="login1", login=("sudo", "-u", "bob"))
    # Apptainer runs on the site's nodes with images at the site; pilots join the head from the site
    assert SlurmSite("x", shared_dir="/s", transport="ssh", host="h",
                     container_runtimes=("apptainer",)).container_runtimes == ("apptainer",)
    assert SlurmSite("x", shared_dir="/s", transport="ssh", host="h", mode="pilot").mode == "pilot"
