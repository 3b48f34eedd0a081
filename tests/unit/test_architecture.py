"""The shape of the code, checked statically: no import circles, metasched never imports a site kind,
no module past ~400 lines. Imports inside functions count (a lazy import is still a dependency); those
under ``if TYPE_CHECKING:`` do not. And, run: what a worker process's start imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("metasched", "site_agents")
MAX_LINES = 420  # "~400": a module past this is two modules


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (outside TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    hidden = {id(node) for block in ast.walk(tree)
              if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
              for node in ast.walk(block)}

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            targets.update(t for a in node.names if (t := resolve(a.name)))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets.update(t for a in node.names if (t := resolve(f"{node.module}.{a.name}")))
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_modules() -> None:
    assert cycles(graph()) == []


def test_the_checker_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_metasched_never_imports_a_site_kind() -> None:
    """site_agents builds on metasched's seam; metasched finds kinds through entry points only."""
    offending = defaultdict(list)
    for module, targets in graph().items():
        if module.startswith("metasched"):
            offending[module] += sorted(t for t in targets if t.startswith("site_agents"))
    assert {m: t for m, t in offending.items() if t} == {}


def test_no_module_past_about_400_lines() -> None:
    long = {name: n for name,
            path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_a_worker_process_starts_without_numpy() -> None:
    """Every Ray worker (local site, pilot blocks) imports metasched.worker as it starts, before its first
    task; numpy, which ProxyStore's connectors import, added ~0.05 s to each. Loaded only when a store is."""
    heavy = ("numpy", "proxystore")
    out = subprocess.run([sys.executable, "-c", "import sys, metasched.worker; print(sorted({m.split('.')[0] "
                          f"for m in sys.modules}} & set({heavy!r})))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout
