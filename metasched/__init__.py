"""metasched: a meta-scheduler for science campaigns that span several computing sites.

The public names are imported on first use (PEP 562), so ``python -m metasched.worker`` on a compute
node loads only the worker and the records it needs, not the scheduler and the API. Site configuration
classes (``ms.LocalSite``, ``ms.SlurmSite``...) are those of the installed site kinds, found by class
name through the ``metasched.site_agents`` entry points: metasched itself names no kind.
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
    "SshFileStore": "metasched.data.stores",
    "CommandResult": "metasched.records",
    "Image": "metasched.records",
    "Checkpoint": "metasched.checkpoint.cooperative",
    "TaskState": "metasched.scheduler.states",
    "DefaultPolicy": "metasched.placement",
    "RoundRobinPolicy": "metasched.placement",
}

__all__ = [
    "AttemptLostError",
    "Campaign",
    "Checkpoint",
    "CommandResult",
    "ConfigurationError",
    "DataTransferError",
    "DefaultPolicy",
    "DependencyError",
    "EndpointStore",
    "FileStore",
    "Image",
    "JournalError",
    "MetaschedError",
    "PlacementError",
    "RedisStore",
    "RemoteTaskError",
    "RoundRobinPolicy",
    "SiteAgentError",
    "SshFileStore",
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
    from metasched.data.stores import EndpointStore, FileStore, RedisStore, SshFileStore
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
    from metasched.placement import DefaultPolicy, RoundRobinPolicy
    from metasched.records import CommandResult, Image
    from metasched.scheduler.states import TaskState


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name[:1].isupper():
        from metasched.sites.registry import config_class_named

        value = config_class_named(name)
        if value is None:
            raise AttributeError(f"module 'metasched' has no attribute {name!r} (no installed site kind "
                                 "has a configuration class of that name)")
    else:
        raise AttributeError(f"module 'metasched' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    from metasched.sites.registry import kinds

    return sorted({*__all__, *(kind.config.__name__ for kind in kinds())})
