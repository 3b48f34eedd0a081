from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import metasched
from metasched.cli import app


def test_version_option_prints_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"metasched {metasched.__version__}"


def test_console_script_is_installed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "metasched", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert metasched.__version__ in proc.stdout
