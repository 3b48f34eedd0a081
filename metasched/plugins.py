"""What installed packages add to metasched by name, through entry points.

Placement policies and serializers; site kinds have their own registry (metasched.sites.registry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points


def make_named(name: str, *, group: str, built_in: Mapping[str, Callable[[], object]],
               what: str) -> tuple[object, str]:
    """Make the built-in `name`, or call what the installed entry point `name` of `group` names.

    An entry point names a class, or a function of no arguments. Returns what was made and where it came
    from ("built-in", or the entry point's value); ValueError (naming the known ones) if nothing is named so.
    """
    if name in built_in:
        return built_in[name](), "built-in"
    installed = {ep.name: ep for ep in entry_points(group=group)}
    if name not in installed:
        known = ", ".join(repr(n) for n in [*built_in, *sorted(installed)])
        raise ValueError(f"unknown {what} {name!r}; known: {known} (a package adds one through the entry "
                         f"point group {group!r}).")
    return installed[name].load()(), installed[name].value
