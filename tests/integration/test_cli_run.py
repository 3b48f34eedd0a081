"""`metasched run FILE` and `metasched status JOURNAL` end to end on the local site."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metasched.cli import app

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


def test_run_a_campaign_file_then_read_its_status(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[campaign]
name = "cli-{os.getpid()}"

[[sites]]
kind = "local"
name = "local"
cores = 2

[[tasks]]
name = "echo-{{i}}"
command = ["python3", "-c", "print({{i}})"]
sweep = {{ i = [1, 2, 3] }}

[[tasks]]
name = "fails"
command = ["python3", "-c", "import sys; sys.exit(4)"]
depends_on = ["echo-{{i}}"]
""")
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 1, result.output  # one task failed
    assert "fails: task 'fails'" in result.output
    assert "exited with status 4" in result.output
    status = runner.invoke(app, ["status", str(tmp_path / f"cli-{os.getpid()}.db"), "--json"])
    assert status.exit_code == 1
    assert json.loads(status.stdout) == {"campaign": f"cli-{os.getpid()}",
                                         "sites": {"local": {"done": 3, "failed": 1}}}
