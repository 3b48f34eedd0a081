"""`metasched testmatrix --sites FILE`: the conformance suite against a user's own sites, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli_helpers import cli, local_campaign_file

pytestmark = [pytest.mark.ray]

ROOT = Path(__file__).resolve().parent.parent.parent


def test_testmatrix_runs_the_suite_against_the_sites_of_a_campaign_file(tmp_path: Path) -> None:
    sites = local_campaign_file(tmp_path, "mine", '[[tasks]]\nname = "t"\ncommand = ["true"]\n')
    out = cli("testmatrix", "--sites", str(sites), "--root", str(ROOT), "--markdown", str(tmp_path / "m.md"),
              timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    [row] = report["rows"]
    assert row["name"] == "local"
    outcomes = {column: cell["outcome"] for column, cell in row["cells"].items()}
    assert [outcomes[c] for c in ("results", "remote failure", "cancel", "walltime kill", "retry",
                                  "many tasks")] == ["pass"] * 6, outcomes
    assert outcomes["server stopped"] == "n/a"
    table = (tmp_path / "m.md").read_text()
    assert "| local | your site | - | local | pass" in table
    assert f"metasched testmatrix --sites {sites}" in table


def test_testmatrix_refuses_a_broken_file_and_a_missing_checkout(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[campaign]\nname = 'x'\n[[sites]]\nkind = 'lsf'\nname = 'a'\n")
    out = cli("testmatrix", "--sites", str(broken), "--root", str(ROOT))
    assert out.returncode == 2
    assert "broken.toml" in out.stderr
    out = cli("testmatrix", "--root", str(tmp_path))
    assert out.returncode == 2
    assert "is not a metasched checkout" in out.stderr
    out = cli("testmatrix", "--only", "lsf", "--root", str(ROOT))
    assert out.returncode == 2
    assert "unknown matrix row(s) lsf" in out.stderr
