"""``python -m metasched.worker ATTEMPT_DIR``: the entry point of batch jobs."""

from __future__ import annotations

import sys

from metasched.worker import main

sys.exit(main(sys.argv[1:]))
