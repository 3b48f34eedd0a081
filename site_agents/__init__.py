"""Site agents: one module per kind of computing site, all satisfying one ``SiteAgent`` protocol."""

from __future__ import annotations
