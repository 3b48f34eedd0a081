"""Checks and defaults every batch site's configuration shares (Grid Engine, PBS); data only, no I/O."""

from __future__ import annotations

import os

from metasched.data.stores import FileStore, StoreSpec
from metasched.errors import ConfigurationError


def check_batch_config(where: str, *, shared_dir: str, max_jobs: int, poll_interval: float) -> None:
    """Raise ConfigurationError, naming the site, for a relative shared_dir or a non-positive limit."""
    if not os.path.isabs(shared_dir):
        raise ConfigurationError(f"{where}: shared_dir must be an absolute path, got {shared_dir!r}.")
    if max_jobs < 1 or poll_interval <= 0:
        raise ConfigurationError(f"{where}: max_jobs must be at least 1 and poll_interval positive.")


def shared_store(shared_dir: str) -> StoreSpec:
    """A file store in the shared directory (every execution host sees it)."""
    return FileStore(os.path.join(shared_dir, ".metasched", "store"))
