"""Task functions as the scheduler stores them: cloudpickled once per campaign, named by content hash."""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

import cloudpickle

from metasched.errors import ConfigurationError

_LIBRARY_PATHS = tuple(
    p for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                sysconfig.get_paths()["platlib"]} if p
)


def is_library_module(module_name: str) -> bool:
    """Whether a module comes from the standard library or an installed package (pickled by reference)."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or module_name in ("__main__", "builtins"):
        return module_name == "builtins"
    return bool(os.path.abspath(path).startswith(_LIBRARY_PATHS))


class FunctionCache:
    """(digest, cloudpickled bytes) of each function, made once.

    The user's own modules are pickled by value, so a resumed process runs the code as it was submitted.
    """

    def __init__(self) -> None:
        self._pickled: dict[Any, tuple[str, bytes]] = {}

    def pickled(self, fn: Callable[..., Any]) -> tuple[str, bytes]:
        """The function's digest and bytes; ConfigurationError if it cannot be pickled."""
        cached = self._pickled.get(fn)
        if cached is not None:
            return cached
        module = getattr(fn, "__module__", None)
        if module and not is_library_module(module) and module != "__main__":
            cloudpickle.register_pickle_by_value(sys.modules[module])
        try:
            blob = cloudpickle.dumps(fn)
        except Exception as exc:
            raise ConfigurationError(f"task function {fn!r} cannot be pickled: {exc}") from exc
        entry = (hashlib.sha256(blob).hexdigest()[:20], blob)
        self._pickled[fn] = entry
        return entry
