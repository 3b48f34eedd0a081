"""Configuration of a PBS-family site (data only: picklable, no I/O); shared batch fields: BatchSite."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Literal

from site_agents.batch.config import BatchSite


@dataclass(frozen=True, slots=True)
class PBSSite(BatchSite):
    """A PBS-family server (OpenPBS / PBS Pro, or Torque) reached with its own client programs.

    Args (besides the batch fields of ``BatchSite``):
        dialect: "openpbs" (OpenPBS 23.06 / PBS Pro: ``select`` chunks, ``qstat -f -F json -x``, which needs
            the server's job history) or "torque" (``nodes=N:ppn=C``, text ``qstat -f``).
        queue: passed as ``-q``; account: passed as ``-A``.
    """

    kind: ClassVar[str] = "pbs"
    _: KW_ONLY
    dialect: Literal["openpbs", "torque"] = "openpbs"
    queue: str | None = None
    account: str | None = None
