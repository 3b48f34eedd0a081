"""The built wheel works outside the checkout: both packages, no ci/, a campaign and the CLI from it.

A non-editable install is what a user gets from ``pip install metasched``; the editable dev install hides
a wheel that lacks a package (it once held only ``metasched/``, so ``import metasched`` failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel
ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = """
[campaign]
name = "from-the-wheel"

[[sites]]
kind = "local"
name = "local"
cores = 1

[[tasks]]
name = "hello-{x}"
command = ["python3", "-c", "print({x} * 2)"]
sweep = { x = [1, 2, 3] }
"""


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    said = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{argv[:3]} exited {proc.returncode}:\n{said}"
    return proc


def test_the_wheel_installs_into_a_fresh_virtualenv_and_runs_a_campaign(tmp_path: Path) -> None:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"),
         str(ROOT)],
        cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("metasched-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {"metasched", "site_agents"} <= tops
    assert not {"ci", "tests", "benchmarks", "examples"} & tops, tops
    assert "metasched/attempt_dir.py" in names
    assert "site_agents/batch/agent.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "site_agents.slurm:KIND" in zipfile.ZipFile(wheel).read(entry_points).decode()

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], cwd=tmp_path, timeout=1200)
    version = run([str(venv / "bin" / "metasched"), "--version"], cwd=tmp_path)
    assert version.stdout.startswith("metasched 0.")
    kinds = run([str(venv / "bin" / "python"), "-c", "import metasched as ms, site_agents; "
                 "print(ms.SlurmSite.__module__, site_agents.__file__)"], cwd=tmp_path)
    assert kinds.stdout.split()[0] == "site_agents.slurm.config"
    assert str(venv) in kinds.stdout.split()[1], "site_agents must come from the wheel, not the checkout"

    (tmp_path / "c.toml").write_text(CAMPAIGN)
    env_home = tmp_path / "home"
    runs = subprocess.run([str(venv / "bin" / "metasched"), "run", "--headless", "c.toml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
                               "METASCHED_HOME": str(env_home)})
    assert runs.returncode == 0, runs.stdout[-3000:] + runs.stderr[-3000:]
    status = subprocess.run([str(venv / "bin" / "metasched"), "status", "--json",
                             str(tmp_path / "from-the-wheel.db")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                            env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
                                 "METASCHED_HOME": str(env_home)})
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["sites"] == {"local": {"done": 3}}
