"""Which TCP sockets listen in a process's network namespace (``/proc/PID/net/tcp{,6}``, as ``ss -ltn``)."""

from __future__ import annotations

from pathlib import Path

LISTEN = "0A"


def listening(pid: int = 1) -> set[tuple[str, str, int]]:
    """(table, hex address, port) of every listening TCP socket in the namespace of `pid`.

    PID 1 is this machine's init: its namespace is the machine's own, wherever the caller runs.
    """
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                address, port = fields[1].rsplit(":", 1)
                found.add((table, address, int(port, 16)))
    return found
