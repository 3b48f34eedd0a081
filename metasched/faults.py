"""Fault-injection points for the crash tests: ``METASCHED_FAULT=<point>:<site>`` SIGKILLs this process there.

Only the tests set it (in the environment of the campaign's driver, which Ray's workers inherit); a point
costs one dictionary lookup when it is not set.
"""

from __future__ import annotations

import os
import signal

ENV = "METASCHED_FAULT"


def armed(point: str, site: str) -> bool:
    """Whether the tests asked for this point at this site."""
    return os.environ.get(ENV) == f"{point}:{site}"


def crash_point(point: str, site: str) -> None:
    """Die at once, as a machine losing power would, if the tests asked for this point at this site."""
    if armed(point, site):
        os.kill(os.getpid(), signal.SIGKILL)
