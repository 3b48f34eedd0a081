"""Helpers for CLI tests: campaign files on the local site, and running `python -m metasched`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

METASCHED = [sys.executable, "-m", "metasched"]

LOCAL_HEADER = """
[campaign]
name = "{name}"

[[sites]]
kind = "local"
name = "local"
cores = 2
"""


def local_campaign_file(directory: Path, name: str, tasks: str) -> Path:
    """Write a campaign file with one 2-core local site and the given [[tasks]] TOML; return its path."""
    path = directory / f"{name}.toml"
    path.write_text(LOCAL_HEADER.format(name=name) + tasks)
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `metasched ARGS...` in a subprocess and capture its output."""
    return subprocess.run([*METASCHED, *args], capture_output=True, text=True, timeout=timeout, check=False)
