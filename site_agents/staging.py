"""What compute nodes (and containers) import metasched's worker from: a copy in a shared directory.

The copy holds metasched, site_agents and the libraries the worker imports, taken from this machine's
environment (pure Python, or CPython 3.11 extension modules that load on any Linux x86_64 CPython
3.11), with their metadata (some libraries read their own version). It is made once per content
(``<shared_dir>/.metasched/lib-<hash>``), so nodes need only a matching Python.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path

import cloudpickle

import metasched
import site_agents
from metasched.attempt_dir import site_area

WORKER_LIBRARIES = ("cloudpickle", "dill", "xxhash", "proxystore", "pydantic", "pydantic_core",
                    "typing_extensions", "annotated_types", "typing_inspection", "tomli_w", "redis",
                    "async_timeout", "requests", "urllib3", "idna", "certifi", "charset_normalizer")


def worker_packages(extra: Sequence[str] = ()) -> list[Path]:
    """metasched, site_agents and the installed libraries the worker may import on a compute node.

    `extra` names more importable modules, or folders beside them in site-packages (such as
    ``pyzmq.libs``, the shared libraries a wheel's extension modules load).
    """
    paths = [Path(metasched.__file__).parent, Path(site_agents.__file__).parent]
    distributions = importlib.metadata.packages_distributions()
    site_packages = Path(cloudpickle.__file__).parent.parent
    for name in (*WORKER_LIBRARIES, *extra):
        spec = importlib.util.find_spec(name) if "." not in name else None
        if spec is None or spec.origin is None:
            if (site_packages / name).is_dir():
                paths.append(site_packages / name)
            continue  # optional (e.g. redis without the redis extra)
        origin = Path(spec.origin)
        paths.append(origin.parent if origin.name == "__init__.py" else origin)
        for dist_name in distributions.get(name, []):
            files = importlib.metadata.distribution(dist_name).files or []
            info = next((f for f in files if f.parent.name.endswith(".dist-info")), None)
            if info is not None:
                paths.append(Path(str(info.locate())).parent)
    return list(dict.fromkeys(paths))


def stage_worker(shared_dir: str, extra: Sequence[str] = ()) -> Path:
    """The directory to put on PYTHONPATH on the site's nodes (copied there if its content is new)."""
    return stage_worker_in(site_area(shared_dir), extra)


def stage_worker_in(area: Path, extra: Sequence[str] = ()) -> Path:
    """``area/lib-<hash>``, copied there if its content is new (a site area, or its local copy)."""
    sources = worker_packages(extra)
    digest = hashlib.sha256()
    files = sorted((src, path) for src in sources
                   for path in ([src] if src.is_file() else src.rglob("*"))
                   if path.is_file() and "__pycache__" not in path.parts)
    for src, path in files:
        digest.update(str(path.relative_to(src.parent)).encode())
        digest.update(path.read_bytes())
    target = area / f"lib-{digest.hexdigest()[:16]}"
    if not target.exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for src in sources:
            if src.is_dir():
                shutil.copytree(src, tmp / src.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, tmp / src.name)
        tmp.rename(target)
    return target
