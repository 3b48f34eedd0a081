"""`metasched run FILE` and `metasched status JOURNAL` end to end on the local site."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metasched.cli import app
from tests.integration.cli_helpers import local_campaign_file

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


def test_run_a_campaign_file_then_read_its_status(tmp_path: Path) -> None:
    path = local_campaign_file(tmp_path, f"cli-{os.getpid()}", """
[[tasks]]
name = "echo-{i}"
command = ["python3", "-c", "print({i})"]
sweep = { i = [1, 2, 3] }

[[tasks]]
name = "fails"
command = ["python3", "-c", "import sys; sys.exit(4)"]
depends_on = ["echo-{i}"]
""")
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 1, result.output  # one task failed
    assert "fails: task 'fails'" in result.output
    assert "exited with status 4" in result.output
    status = runner.invoke(app, ["status", str(tmp_path / f"cli-{os.getpid()}.db"), "--json"])
    assert status.exit_code == 1
    assert json.loads(status.stdout) == {"campaign": f"cli-{os.getpid()}",
                                         "sites": {"local": {"done": 3, "failed": 1}},
                                         "blocks": {},  # no pilot site
                                         "site_problems": {}}  # (the campaign has ended)
    used = json.loads(runner.invoke(app, ["status", str(tmp_path / f"cli-{os.getpid()}.db"), "--json",
                                          "--usage"]).stdout)
    assert used["usage"]["local"]["attempts"] == 4  # the failed command measured too
    assert [h["task_name"] for h in used["heaviest"]].count("fails") == 1


def test_report_writes_html_and_figures(tmp_path: Path) -> None:
    path = local_campaign_file(tmp_path, f"report-{os.getpid()}", """
[[tasks]]
name = "nap-{i}"
command = ["sleep", "0.{i}"]
sweep = { i = { range = [1, 5] } }

[[tasks]]
name = "broken"
command = ["false"]
""")
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(path)]).exit_code == 1
    journal = tmp_path / f"report-{os.getpid()}.db"
    result = runner.invoke(app, ["report", str(journal), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<td>local</td><td>5</td><td>4</td><td>1</td><td>0</td>" in page
    for figure in ("gantt.png", "utilization.png"):
        data = (tmp_path / "rep" / figure).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 5000
        assert figure in page
    assert "waits.png" not in page  # the local site reports no separate queue wait
    assert "data-attempt-bars='5'" in page  # one bar per attempt (5 attempts, 5 tasks)
    empty = runner.invoke(app, ["report", str(tmp_path / "missing.db")])
    assert empty.exit_code == 2


def test_logs_show_output_and_errors(tmp_path: Path) -> None:
    path = local_campaign_file(tmp_path, f"logs-{os.getpid()}", """
[[tasks]]
name = "talk"
command = ["python3", "-c", "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"]

[[tasks]]
name = "crash"
command = ["python3", "-c", "import sys; print('dying', file=sys.stderr); sys.exit(7)"]
""")
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(path)]).exit_code == 1
    journal = str(tmp_path / f"logs-{os.getpid()}.db")
    talk = runner.invoke(app, ["logs", journal, "talk"])
    assert talk.exit_code == 0
    assert "to stdout\n" in talk.stdout
    assert "to stderr\n" in talk.stdout
    crash = runner.invoke(app, ["logs", journal, "crash"])
    assert "exited with status 7" in crash.stdout
    assert "dying" in crash.stdout
    assert runner.invoke(app, ["logs", journal, "nope"]).exit_code == 2


def test_data_lists_stored_outputs_and_delete_removes_them_with_the_journal(tmp_path: Path) -> None:
    name = f"data-cli-{os.getpid()}"
    store = tmp_path / "store"
    path = tmp_path / "c.toml"
    path.write_text(f"""
[campaign]
name = "{name}"
data_threshold = 1000
store = {{ kind = "file", path = "{store}" }}

[[tasks]]
name = "big-{{i}}"
command = ["python3", "-c", "print('x' * 20000)"]
sweep = {{ i = [1, 2] }}

[[tasks]]
name = "small"
command = ["echo", "hi"]
""")
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(path), "--headless"]).exit_code == 0
    listed = runner.invoke(app, ["data", name, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert sorted(r["task"] for r in rows) == ["big-1", "big-2"]  # "small" stayed inline
    assert all(r["store"] == f"file:{store}" and r["bytes"] > 20000 and not r["evicted"] for r in rows)
    logs = runner.invoke(app, ["logs", name, "big-1"])
    assert logs.exit_code == 0
    assert "x" * 100 in logs.output  # a stored result is read back through its proxy
    stored = [n for n in os.listdir(store) if n.endswith(".ready")]
    assert len(stored) == 2
    deleted = runner.invoke(app, ["delete", name, "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert not [n for n in os.listdir(store) if not n.startswith(".")]
    assert not (tmp_path / f"{name}.db").exists()
    assert runner.invoke(app, ["status", name]).exit_code == 2
