"""Configuration of a Grid Engine site (data only: picklable, no I/O); shared batch fields: BatchSite."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from site_agents.batch.config import BatchSite


@dataclass(frozen=True, slots=True)
class GridEngineSite(BatchSite):
    """A Grid Engine (SGE 8.1.9 family) cell reached with its own client programs.

    Args (besides the batch fields of ``BatchSite``; `environment` holds ``SGE_ROOT``, ``SGE_CELL``,
    ``SGE_QMASTER_PORT``... where the login shell does not set them):
        queue: passed as ``-q``; project: passed as ``-P``.
        pe: the parallel environment multi-core tasks ask for (``-pe <pe> <cores>``).
    """

    kind: ClassVar[str] = "gridengine"
    _: KW_ONLY
    queue: str | None = None
    project: str | None = None
    pe: str = "smp"
