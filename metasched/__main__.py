"""``python -m metasched`` runs the command line."""

from __future__ import annotations

from metasched.cli import main

main()
