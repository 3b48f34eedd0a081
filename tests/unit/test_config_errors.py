"""Broken campaign files, each with the exact problem expected; and a fuzzer that only ever sees
validation errors come out of the validator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasched.config import CampaignFileError, check_data, load_campaign_file

BASE = """[campaign]
name = "c"

[[sites]]
kind = "local"
name = "local"

[[tasks]]
name = "a"
command = ["true"]
"""
SLURM = 'kind = "slurm"\nname = "s"\nslurm_conf = "/etc/hostname"\nshared_dir = "/tmp"'


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


CASES: list[tuple[str, str, list[str]]] = [
    ("unknown campaign key", edit('name = "c"', 'name = "c"\ncolour = 1'),
     ["3: campaign.colour: Extra inputs are not permitted"]),
    ("bad campaign name", edit('name = "c"', 'name = "c d"'),
     ["2: campaign.name: String should match pattern '^[A-Za-z0-9_.-]+$'"]),
    ("missing campaign", edit('[campaign]\nname = "c"\n', ""), ["1: campaign: Field required"]),
    ("bad policy", edit('name = "c"', 'name = "c"\npolicy = "random"'),
     ["3: campaign.policy: unknown placement policy 'random'; known: 'default', 'round-robin' (a package "
      "adds one through the entry point group 'metasched.placement_policies')."]),
    ("hedging without the default policy", edit('name = "c"', 'name = "c"\npolicy = "round-robin"\n'
                                                'hedge_after_s = 30'),
     ["4: campaign.hedge_after_s: only the default policy hedges (policy is 'round-robin')"]),
    ("hedge budget above 1", edit('name = "c"', 'name = "c"\nhedge_budget = 2'),
     ["3: campaign.hedge_budget: Input should be less than or equal to 1"]),
    ("a move later than a hedge", edit('name = "c"', 'name = "c"\nhedge_after_s = 5\nmove_after_s = 9'),
     ["3: campaign.hedge_after_s: hedge_after_s and move_after_s must be positive, move_after_s no longer "
      "(got 5.0, 9.0), and hedge_budget a fraction of the campaign's tasks between 0 and 1 (got 0.1)."]),
    ("unknown site kind", edit('kind = "local"', 'kind = "lsf"'),
     ["5: sites[0].kind: no installed package provides the site kind 'lsf' (installed kinds: "
      "globus_compute, gridengine, local, pbs, slurm)."]),
    ("missing site kind", edit('kind = "local"\n', ""),
     ["4: sites[0].kind: every site needs a kind (installed kinds: globus_compute, gridengine, local, pbs, "
      "slurm)"]),
    ("unknown site key", edit('name = "local"', 'name = "local"\ncpus = 4'),
     ["7: sites[0].cpus: Extra inputs are not permitted"]),
    ("negative site cores", edit('name = "local"', 'name = "local"\ncores = -1'),
     ["7: sites[0].cores: Input should be greater than or equal to 0"]),
    ("slurm without slurm_conf", edit('kind = "local"\nname = "local"', 'kind = "slurm"\nname = "s"\n'
                                      'shared_dir = "/tmp"'),
     ["4: sites[0]: slurm site s: give slurm_conf (the cluster's slurm.conf), or a login prefix that runs "
      "the site's own Slurm client."]),
    ("slurm poll interval 0", edit('kind = "local"\nname = "local"', SLURM + "\npoll_interval = 0"),
     ["9: sites[0].poll_interval: Input should be greater than 0"]),
    ("slurm unknown mode", edit('kind = "local"\nname = "local"', SLURM + '\nmode = "pilots"'),
     ["9: sites[0].mode: Input should be 'batch' or 'pilot'"]),
    ("slurm pilot blocks", edit('kind = "local"\nname = "local"', SLURM + '\nmode = "pilot"\nmax_blocks = 0'),
     ["10: sites[0].max_blocks: Input should be greater than or equal to 1"]),
    ("slurm conf missing on disk", edit('kind = "local"\nname = "local"',
                                        SLURM.replace("/etc/hostname", "/no/such/slurm.conf")),
     ["7: sites[0].slurm_conf: file /no/such/slurm.conf does not exist"]),
    ("no tasks", BASE.split("[[tasks]]")[0], ["1: tasks: Field required"]),
    ("empty command", edit('command = ["true"]', "command = []"),
     ["10: tasks[0].command: List should have at least 1 item after validation, not 0"]),
    ("command as a shell string", edit('command = ["true"]', 'command = "true"'),
     ["10: tasks[0].command: Input should be a valid list"]),
    ("unknown task key", edit('command = ["true"]', 'command = ["true"]\ncpu = 2'),
     ["11: tasks[0].cpu: Extra inputs are not permitted"]),
    ("zero cores", edit('command = ["true"]', 'command = ["true"]\ncores = 0'),
     ["11: tasks[0].cores: Input should be greater than or equal to 1"]),
    ("negative retries", edit('command = ["true"]', 'command = ["true"]\nretries = -1'),
     ["11: tasks[0].retries: Input should be greater than or equal to 0"]),
    ("range of one number", edit('command = ["true"]', 'command = ["true"]\nsweep = { x = { range = [1] } }'),
     ["11: tasks[0].sweep.x: Input should be a valid list",
      "11: tasks[0].sweep.x.range: List should have at least 2 items after validation, not 1"]),
    ("sweep key not in command",
     edit('command = ["true"]', 'command = ["echo", "{y}"]\nsweep = { x = [1, 2] }'),
     ["11: tasks[0].sweep: sweep does not expand the name or command: KeyError('y')"]),
    ("swept name without its key", edit('command = ["true"]', 'command = ["true"]\nsweep = { x = [1, 2] }'),
     ["8: tasks: task name 'a' occurs more than once after sweeps (put the sweep keys in swept names, "
      "e.g. 'sim-{x}')"]),
    ("unknown dependency", edit('command = ["true"]', 'command = ["true"]\ndepends_on = ["zzz"]'),
     ["11: tasks[0].depends_on: depends on 'zzz', which is not a task of this file"]),
    ("self dependency", edit('command = ["true"]', 'command = ["true"]\ndepends_on = ["a"]'),
     ["8: tasks: dependencies form a cycle: a -> a"]),
    ("unknown task site", edit('command = ["true"]', 'command = ["true"]\nsites = ["mars"]'),
     ["11: tasks[0].sites: unknown site 'mars' (sites: local)"]),
    ("duplicate site", BASE + '\n[[sites]]\nkind = "local"\nname = "local"\n',
     ["6: sites[0].name: site name 'local' is used more than once",
      "14: sites[1].name: site name 'local' is used more than once"]),
    ("env value not a string", edit('command = ["true"]', 'command = ["true"]\nenv = { A = 1 }'),
     ["11: tasks[0].env.A: Input should be a valid string"]),
    ("store of unknown kind", edit('name = "local"', 'name = "local"\nstore = { kind = "s3" }'),
     ["7: sites[0].store: store kind must be one of file, redis, endpoint, ssh-file, got 's3'"]),
    ("redis store without port", edit('name = "c"', 'name = "c"\nstore = { kind = "redis" }'),
     ["3: campaign.store.port: Field required"]),
    ("relative file store", edit('name = "local"', 'name = "local"\nstore = { kind = "file", path = "x" }'),
     ["7: sites[0].store: file store path 'x' must be absolute."]),
    ("negative data threshold", edit('name = "c"', 'name = "c"\ndata_threshold = -1'),
     ["3: campaign.data_threshold: Input should be greater than or equal to 0"]),
    ("unknown checkpoint backend", edit('command = ["true"]', 'command = ["true"]\ncheckpoint = "dmtcp"'),
     ["11: tasks[0].checkpoint: Input should be 'criu'"]),
    ("relative sif path",
     edit('command = ["true"]', 'command = ["true"]\ncontainer = { name = "app", sif = "a.sif" }'),
     ["11: tasks[0].container.sif: String should match pattern '^/'"]),
    ("image without a name",
     edit('command = ["true"]', 'command = ["true"]\ncontainer = { docker = "app:1" }'),
     ["11: tasks[0].container.name: Field required"]),
    ("criu checkpoint of a container",
     edit('command = ["true"]', 'command = ["true"]\ncontainer = "app:1"\ncheckpoint = "criu"'),
     ["8: tasks[0]: checkpoint = 'criu' cannot dump a container; drop one of "
      "container/checkpoint"]),
    ("local site with apptainer",
     edit('name = "local"', 'name = "local"\ncontainer_runtimes = ["apptainer"]'),
     ["7: sites[0].container_runtimes[0]: Input should be 'docker'"]),
    ("globus compute with two endpoints",
     edit('kind = "local"\nname = "local"', 'kind = "globus_compute"\nname = "g"\n'
          'endpoint_id = "6a2c1b0e-53ea-4d5c-9c4e-0a3b4c5d6e7f"\noffline_endpoint = "127.0.0.1:9"\n'
          'authkey_file = "/etc/hostname"'),
     ["4: sites[0]: globus_compute site g: give exactly one of endpoint_id (the Globus cloud) and "
      "offline_endpoint (a local offline endpoint)."]),
    ("globus compute offline endpoint off loopback",
     edit('kind = "local"\nname = "local"', 'kind = "globus_compute"\nname = "g"\n'
          'offline_endpoint = "10.0.0.1:9"\nauthkey_file = "/etc/hostname"'),
     ["7: sites[0].offline_endpoint: must be 127.0.0.1:PORT (offline endpoints listen on loopback only), got "
      "'10.0.0.1:9'"]),
    ("globus compute missing authkey file",
     edit('kind = "local"\nname = "local"', 'kind = "globus_compute"\nname = "g"\n'
          'offline_endpoint = "127.0.0.1:9"\nauthkey_file = "/no/such/key"'),
     ["8: sites[0].authkey_file: file /no/such/key does not exist"]),
    ("not TOML", "this is = = not toml",
     ["1: not valid TOML: Expected '=' after a key in a key/value pair (at line 1, column 6)"]),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_broken_file_reports_exactly(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(CampaignFileError) as excinfo:
        load_campaign_file(path)
    assert excinfo.value.problems == [f"{path}:{line}" for line in expected]
    assert str(path) in str(excinfo.value)


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


KEYS = st.sampled_from(["campaign", "sites", "tasks", "name", "kind", "command", "sweep", "range",
                        "depends_on", "cores", "slurm_conf", "shared_dir", "journal", "policy", "x", "env"])
SCALARS = st.one_of(st.integers(-3, 10), st.text(max_size=8), st.booleans(), st.floats(allow_nan=False),
                    st.sampled_from(["local", "slurm", "a", "{x}", "default"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=4)),
                      max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=4))
def test_random_campaign_data_only_ever_gives_validation_errors(data: dict[str, Any]) -> None:
    problems: list[str] | None = None
    try:
        loaded = check_data(data, Path("fuzz.toml"))
    except CampaignFileError as exc:
        problems = exc.problems
    if problems is None:
        assert loaded.tasks, "a file that validates has tasks"
    else:
        assert problems
        assert all(p.startswith("fuzz.toml:") for p in problems)
