"""metasched: a meta-scheduler for science campaigns that span several computing sites."""

from __future__ import annotations

__version__ = "0.1.0"

from metasched.api import Campaign, TaskFuture, as_completed, wait
from metasched.errors import (
    AttemptLostError,
    ConfigurationError,
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
from metasched.records import CommandResult
from metasched.scheduler.states import TaskState
from site_agents.local import LocalSite
from site_agents.slurm.config import SlurmSite

__all__ = [
    "AttemptLostError",
    "Campaign",
    "CommandResult",
    "ConfigurationError",
    "DependencyError",
    "JournalError",
    "LocalSite",
    "MetaschedError",
    "PlacementError",
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
