"""metasched: a meta-scheduler for science campaigns that span several computing sites.

The public names are imported on first use (PEP 562), so ``python -m metasched.worker`` on a compute
node loads only the worker and the records it needs, not the scheduler and the API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Campaign": "metasched.api",
    "TaskFuture": "metasched.futures",
    "as_completed": "metasched.futures",
    "wait": "metasched.futures",
    "AttemptLostError": "metasched.errors",
    "ConfigurationError": "metasched.errors",
    "DependencyError": "metasched.errors",
    "JournalError": "metasched.errors",
    "MetaschedError": "metasched.errors",
    "PlacementError": "metasched.errors",
    "RemoteTaskError": "metasched.errors",
    "SiteAgentError": "metasched.errors",
    "TaskCancelledError": "metasched.errors",
    "TaskError": "metasched.errors",
    "WalltimeExceededError": "metasched.errors",
    "DataTransferError": "metasched.errors",
    "EndpointStore": "metasched.data.stores",
    "FileStore": "metasched.data.stores",
    "RedisStore": "metasched.data.stores",
    "CommandResult": "metasched.records",
    "Image": "metasched.records",
    "Checkpoint": "metasched.checkpoint.cooperative",
    "TaskState": "metasched.scheduler.states",
    "LocalSite": "site_agents.local",
    "SlurmSite": "site_agents.slurm.config",
    "GlobusComputeSite": "site_agents.globus_compute.config",
    "GridEngineSite": "site_agents.gridengine.config",
    "PBSSite": "site_agents.pbs.config",
}

__all__ = [
    "AttemptLostError",
    "Campaign",
    "Checkpoint",
    "CommandResult",
    "ConfigurationError",
    "DataTransferError",
    "DependencyError",
    "EndpointStore",
    "FileStore",
    "GlobusComputeSite",
    "GridEngineSite",
    "Image",
    "JournalError",
    "LocalSite",
    "MetaschedError",
    "PBSSite",
    "PlacementError",
    "RedisStore",
    "RemoteTaskError",
    "SiteAgentError",
    "SlurmSite",
    "TaskCancelledError",
    "TaskError",
    "TaskFuture",
    "TaskState",
    "WalltimeExceededError",
    "__version__",
    "as_completed",
    "wait",
]

if TYPE_CHECKING:
    from metasched.api import Campaign
    from metasched.checkpoint.cooperative import Checkpoint
    from metasched.data.stores import EndpointStore, FileStore, RedisStore
    from metasched.errors import (
        AttemptLostError,
        ConfigurationError,
        DataTransferError,
        DependencyError,
        JournalError,
        MetaschedError,
        PlacementError,
        RemoteTaskError,
        SiteAgentError,
        TaskCancelledError,
        TaskError,
        WalltimeExceededError,
    )
    from metasched.futures import TaskFuture, as_completed, wait
    from metasched.records import CommandResult, Image
    from metasched.scheduler.states import TaskState
    from site_agents.globus_compute.config import GlobusComputeSite
    from site_agents.gridengine.config import GridEngineSite
    from site_agents.local import LocalSite
    from site_agents.pbs.config import PBSSite
    from site_agents.slurm.config import SlurmSite


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metasched' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
