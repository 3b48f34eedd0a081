"""Where campaigns' journals are, by name, so CLI commands accept a campaign name or a journal path.

A campaign records itself when it starts, in ``$METASCHED_HOME/campaigns.json`` (default
``~/.metasched``). The file is advisory: a journal path always works, and a stale entry is reported,
never trusted blindly.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def metasched_home() -> Path:
    """Metasched's own directory: ``$METASCHED_HOME``, default ``~/.metasched``."""
    return Path(os.environ.get("METASCHED_HOME") or Path.home() / ".metasched")


def catalog_path() -> Path:
    """The catalog file."""
    return metasched_home() / "campaigns.json"


def known() -> dict[str, str]:
    """Campaign name -> journal path, as recorded."""
    try:
        data = json.loads(catalog_path().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember(name: str, journal: Path) -> None:
    """Record (or update) a campaign's journal; failures to write are not errors (advisory file)."""
    entries = known()
    entries[name] = str(journal.resolve())
    _write(entries)


def forget(journal: Path) -> None:
    """Drop every name recorded for this journal (after the campaign was deleted)."""
    target = str(journal.resolve())
    _write({name: path for name, path in known().items() if path != target})


def _write(entries: dict[str, str]) -> None:
    path = catalog_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(entries, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, path)
    except OSError:
        pass


def resolve(campaign: str) -> Path | None:
    """A journal path from a path or a recorded campaign name; None if neither exists."""
    path = Path(campaign)
    if path.is_file():
        return path
    recorded = known().get(campaign)
    if recorded is not None and Path(recorded).is_file():
        return Path(recorded)
    return None
