"""metasched: a meta-scheduler for science campaigns that span several computing sites."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
