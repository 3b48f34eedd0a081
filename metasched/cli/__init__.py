"""The ``metasched`` command line: one Typer app (``app``), its commands grouped by what they act on.

``running``: run, resume, retry, submit (drive a campaign); ``reading``: status, watch, logs, report (read
a journal); ``following``: events, and a running task's output (``logs --follow``); ``checks``: config
check, sites check, testmatrix; ``steering``: cancel, drain, checkpoint, migrate (requests the running
scheduler answers) and the stored data (data, delete).
"""

from __future__ import annotations

from metasched.cli import checks, following, reading, running, steering
from metasched.cli.app import app, main

__all__ = ["app", "checks", "following", "main", "reading", "running", "steering"]
