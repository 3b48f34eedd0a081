"""``metasched sites check``: each site's own checks, as its kind declares them, each failure with a fix.

A kind without preflight checks of its own is checked by starting its agent and closing it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from metasched.errors import MetaschedError
from metasched.sites.kind import Check
from metasched.sites.registry import kind_of


def check_site(config: Any) -> list[Check]:
    """Every check of one site, in order (a kind stops after the first check that makes later ones moot)."""
    kind = kind_of(config)
    if kind.preflight is not None:
        return list(kind.preflight(config))
    return list(_agent_starts(config))


def _agent_starts(config: Any) -> Iterator[Check]:
    kind = kind_of(config)
    agent = kind.agent(config)
    try:
        agent.start()
    except MetaschedError as exc:
        yield Check(site=config.name, check="start", passed=False, detail=str(exc).splitlines()[0],
                    fix=f"see the documentation of site kind {kind.name!r}")
        return
    finally:
        agent.close()
    yield Check(site=config.name, check="start", passed=True, detail=f"the {kind.name} agent started")
