"""A site kind, a placement policy and a serializer from outside metasched (tests/data/external-kind),
installed as a user would install them: a campaign file, `sites check` and the contract suite run against
the kind through metasched's own CLI, the policy places a campaign's tasks, by name and as an object, and
the serializer carries a campaign's values, with no change to metasched (all found through their entry
points)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metasched.journal import Journal

pytestmark = [pytest.mark.wheel, pytest.mark.ray]
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tests" / "data" / "external-kind"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The package installed (pip, through its entry point) into a directory put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("external-kind")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                           str(target), str(PACKAGE)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("metasched_subproc_site-*.dist-info/entry_points.txt"))
    return {**os.environ, "PYTHONPATH": str(target)}


def metasched(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metasched", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def campaign_file(directory: Path) -> Path:
    work = directory / "work"
    work.mkdir()
    path = directory / "c.toml"
    path.write_text(f"""
[campaign]
name = "external-{os.getpid()}"

[[sites]]
kind = "subproc"
name = "procs"
work_dir = "{work}"
slots = 2

[[tasks]]
name = "echo-{{x}}"
command = ["python3", "-c", "print({{x}})"]
sweep = {{ x = [1, 2, 3, 4] }}
""")
    return path


def test_a_campaign_file_and_sites_check_use_the_installed_kind(installed: dict[str, str], tmp_path: Path
                                                                  ) -> None:
    path = campaign_file(tmp_path)
    checked = metasched(installed, "config", "check", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 site(s), 4 task(s)" in checked.stdout
    sites = metasched(installed, "sites", "check", str(path), cwd=tmp_path)
    assert sites.returncode == 0, sites.stdout + sites.stderr
    assert "work_dir" in sites.stdout
    bad = path.read_text().replace("slots = 2", "slots = 0\ncolour = 1")
    (tmp_path / "bad.toml").write_text(bad)
    refused = metasched(installed, "config", "check", str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert refused.returncode == 2
    assert "sites[0].slots: Input should be greater than or equal to 1" in refused.stderr
    assert "sites[0].colour: Extra inputs are not permitted" in refused.stderr
    ran = metasched(installed, "run", "--headless", str(path), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    journal = next(tmp_path.glob("external-*.db"))
    status = metasched(installed, "status", "--json", str(journal), cwd=tmp_path)
    assert json.loads(status.stdout)["sites"] == {"procs": {"done": 4}}
    unknown = metasched({**installed, "PYTHONPATH": ""}, "config", "check", str(path), cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no installed package provides the site kind 'subproc'" in unknown.stderr


def test_the_contract_suite_passes_on_the_installed_kind(installed: dict[str, str], tmp_path: Path) -> None:
    path = campaign_file(tmp_path)
    out = tmp_path / "matrix.md"
    matrix = metasched(installed, "testmatrix", "--sites", str(path), "--root", str(ROOT), "--markdown",
                       str(out), cwd=ROOT)
    assert matrix.returncode == 0, matrix.stdout[-4000:] + matrix.stderr[-4000:]
    report = json.loads(out.with_suffix(".json").read_text())
    [row] = report["rows"]
    outcomes = {column: cell["outcome"] for column, cell in row["cells"].items() if cell["outcome"] != "n/a"}
    assert outcomes == dict.fromkeys(outcomes, "pass")
    assert len(outcomes) == 6
    assert f"against the sites of {path}" in out.read_text()


def test_an_installed_policy_places_tasks_by_name_and_as_an_object(installed: dict[str, str],
                                                                   tmp_path: Path) -> None:
    """Local first, procs last: the default policy would use the local cores too; last-site never does."""
    path = campaign_file(tmp_path)
    text = path.read_text().replace('[[sites]]\nkind = "subproc"',
                                    '[[sites]]\nkind = "local"\nname = "local"\ncores = 2\n\n'
                                    '[[sites]]\nkind = "subproc"')
    path.write_text(text.replace('[campaign]\n', '[campaign]\npolicy = "last-site"\n'))
    ran = metasched(installed, "run", "--headless", str(path), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    journal = next(tmp_path.glob("external-*.db"))
    status = metasched(installed, "status", "--json", str(journal), cwd=tmp_path)
    assert json.loads(status.stdout)["sites"] == {"procs": {"done": 4}}
    stored = Journal(journal).open(read_only=True)
    assert stored.get_meta("policy") == "last-site"  # what `metasched resume JOURNAL` places with
    stored.close()
    unknown = metasched({**installed, "PYTHONPATH": ""}, "config", "check", str(path), cwd=tmp_path)
    assert "campaign.policy: unknown placement policy 'last-site'" in unknown.stderr
    work = tmp_path / "work"
    script = f"""
import metasched as ms
from subproc_site import SubprocSite
from subproc_site.policy import LastSite
sites = [ms.LocalSite("local", cores=2), SubprocSite("procs", work_dir={str(work)!r})]
with ms.Campaign("object-policy", sites=sites, journal={str(tmp_path / "o.db")!r}, policy=LastSite()) as c:
    futures = [c.command(["true"]) for _ in range(4)]
    ms.wait(futures)
    print("SITES", sorted({{s.site for s in c.status() if s.done}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=installed, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SITES ['procs']" in proc.stdout


def test_an_installed_serializer_carries_a_campaigns_values(installed: dict[str, str],
                                                            tmp_path: Path) -> None:
    journal = tmp_path / "ok.db"
    script = f"""
import metasched as ms
with ms.Campaign("json-values", sites=[ms.LocalSite("local", cores=2)],
                 journal={str(tmp_path / "refused.db")!r}, serializer="json") as c:
    @c.task()
    def count(words, *, upper=False):
        return {{"n": len(words), "first": words[0].upper() if upper else words[0]}}

    first = count(["alpha", "beta"], upper=True)
    print("RESULT", count([first, 3]).result(timeout=120))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=installed, capture_output=True,
                          text=True, timeout=300, check=False)
    assert "RESULT" not in proc.stdout, "a dependency (a TaskRef) is not JSON: refused at submit"
    assert "task 'count': argument 1 (a list)" in proc.stderr, proc.stderr[-3000:]
    assert "(serializer 'json')" in proc.stderr
    ok = script.replace("count([first, 3])", "count(['x', 3])").replace("refused.db", journal.name)
    proc = subprocess.run([sys.executable, "-c", ok], cwd=tmp_path, env=installed, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT {'n': 2, 'first': 'x'}" in proc.stdout
    with Journal(journal).open(read_only=True) as stored:
        results = [t.result for t in stored.tasks() if t.result is not None]
    assert results
    assert all(r.startswith(b"\x00metasched-serializer:json\n{") for r in results)
    unknown = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                             env={**installed, "PYTHONPATH": ""}, capture_output=True, text=True, timeout=300,
                             check=False)
    assert "unknown serializer 'json'" in unknown.stderr
