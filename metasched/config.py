"""Campaign files (TOML): typed models (pydantic, ``extra="forbid"``) and every check at once.

```toml
[campaign]
name = "sweep"
journal = "sweep.db"          # default: <name>.db next to the file

[[sites]]
kind = "local"
name = "local"
cores = 2

[[tasks]]
name = "sim-{x}"
command = ["python3", "-c", "print({x})"]
sweep = { x = { range = [0, 4] } }    # or x = [1, 2, 3]; several keys = their product
walltime = "00:10:00"

[[tasks]]
name = "collect"
command = ["echo", "done"]
depends_on = ["sim-{x}"]      # a swept task's name means all of its expansions
```

``load_campaign_file`` returns the validated file or raises ``CampaignFileError`` listing every problem
with its file, line and field (``sweep.toml:12: sites[1].partition: ...``).
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from metasched.errors import ConfigurationError
from metasched.records import Image


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileStoreModel(_Model):
    """``store = { kind = "file", path = "/shared/dir" }``."""

    kind: Literal["file"]
    path: str = Field(pattern=r"^/")


class RedisStoreModel(_Model):
    """``store = { kind = "redis", port = 6379 }`` (host defaults to 127.0.0.1)."""

    kind: Literal["redis"]
    port: int = Field(gt=0, lt=65536)
    host: str = "127.0.0.1"


class EndpointStoreModel(_Model):
    """``store = { kind = "endpoint", endpoint = "<uuid>", proxystore_dir = "/shared/psdir" }``."""

    kind: Literal["endpoint"]
    endpoint: str = Field(pattern=r"^[0-9a-fA-F-]{36}$")
    proxystore_dir: str | None = Field(default=None, pattern=r"^/")


StoreModel = Annotated[FileStoreModel | RedisStoreModel | EndpointStoreModel, Field(discriminator="kind")]


class CampaignSection(_Model):
    """The ``[campaign]`` table."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    journal: str | None = None
    policy: Literal["default", "round-robin"] = "default"
    store: StoreModel | None = None
    data_threshold: int = Field(default=100_000, ge=0)


class LocalSiteModel(_Model):
    """A ``[[sites]]`` entry of kind "local"."""

    kind: Literal["local"]
    name: str
    cores: int = Field(default=0, ge=0)
    gpus: int = Field(default=0, ge=0)
    memory_mb: int = Field(default=0, ge=0)
    max_inflight: int = Field(default=0, ge=0)
    max_pack: int = Field(default=32, ge=1)
    store: StoreModel | None = None
    container_runtimes: list[Literal["docker"]] = Field(default_factory=list)
    container_binds: list[Annotated[str, Field(pattern=r"^/")]] = Field(default_factory=list)
    work_dir: str = Field(default="", pattern=r"^(/.*)?$")


class SlurmSiteModel(_Model):
    """A ``[[sites]]`` entry of kind "slurm"."""

    kind: Literal["slurm"]
    name: str
    slurm_conf: str
    shared_dir: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mode: Literal["batch"] = "batch"
    max_jobs: int = Field(default=100, ge=1)
    poll_interval: float = Field(default=1.0, gt=0)
    python: str = "python3"
    gpus_per_node: int = Field(default=0, ge=0)
    signal_lead_s: int = Field(default=60, ge=0)
    stall_after_s: float = Field(default=120.0, gt=0)
    accounting: bool | None = None
    store: StoreModel | None = None
    checkpoint_dir: str | None = Field(default=None, pattern=r"^/")
    criu: str = "criu"
    login: list[str] = Field(default_factory=list)
    container_runtimes: list[Literal["apptainer"]] = Field(default_factory=list)
    apptainer: list[str] = Field(default_factory=lambda: ["apptainer", "--quiet", "exec"], min_length=1)


class GlobusComputeSiteModel(_Model):
    """A ``[[sites]]`` entry of kind "globus_compute" (exactly one of endpoint_id and offline_endpoint)."""

    kind: Literal["globus_compute"]
    name: str
    endpoint_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")
    user_endpoint_config: dict[str, Any] = Field(default_factory=dict)
    offline_endpoint: str | None = Field(default=None, pattern=r"^(127\.0\.0\.1|localhost):\d+$")
    authkey_file: str | None = None
    max_inflight: int = Field(default=256, ge=1)
    cores: int = Field(default=4, ge=1)
    memory_mb: int = Field(default=16000, ge=1)
    gpus: int = Field(default=0, ge=0)
    batch_size: int = Field(default=64, ge=1)
    requests_per_s: float = Field(default=2.0, gt=0)
    code_strategy: Literal["DillCode", "PickleCode"] = "DillCode"
    data_strategy: Literal["DillDataBase64"] = "DillDataBase64"
    preflight_timeout_s: float = Field(default=300.0, ge=0)
    store: StoreModel | None = None
    poll_interval: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _one_endpoint(self) -> GlobusComputeSiteModel:
        if (self.endpoint_id is None) == (self.offline_endpoint is None):
            raise ValueError("give exactly one of endpoint_id and offline_endpoint")
        if self.offline_endpoint is not None and not self.authkey_file:
            raise ValueError("offline_endpoint needs authkey_file")
        return self


class GridEngineSiteModel(_Model):
    """A ``[[sites]]`` entry of kind "gridengine"."""

    kind: Literal["gridengine"]
    name: str
    shared_dir: str = Field(pattern=r"^/")
    login: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    queue: str | None = None
    project: str | None = None
    pe: str = "smp"
    max_jobs: int = Field(default=100, ge=1)
    poll_interval: float = Field(default=1.0, gt=0)
    python: str = "python3"
    store: StoreModel | None = None


class PBSSiteModel(_Model):
    """A ``[[sites]]`` entry of kind "pbs" (dialect "openpbs" or "torque")."""

    kind: Literal["pbs"]
    name: str
    shared_dir: str = Field(pattern=r"^/")
    dialect: Literal["openpbs", "torque"] = "openpbs"
    login: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    queue: str | None = None
    account: str | None = None
    max_jobs: int = Field(default=100, ge=1)
    poll_interval: float = Field(default=1.0, gt=0)
    python: str = "python3"
    store: StoreModel | None = None


SiteModel = Annotated[LocalSiteModel | SlurmSiteModel | GlobusComputeSiteModel | GridEngineSiteModel
                      | PBSSiteModel, Field(discriminator="kind")]


class RangeModel(_Model):
    """``{ range = [start, stop] }`` or ``[start, stop, step]``, like Python's range."""

    range: list[int] = Field(min_length=2, max_length=3)


class ImageModel(_Model):
    """``container = { name = "app:1", sif = "/shared/app.sif" }`` (a plain string is the name)."""

    name: str = Field(min_length=1)
    docker: str | None = None
    sif: str | None = Field(default=None, pattern=r"^/")
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    python: str = "python3"


def _image_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class TaskModel(_Model):
    """A ``[[tasks]]`` entry: a command task, possibly swept into many."""

    name: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    check: bool = True
    cores: int = Field(default=1, ge=1)
    memory: int | str | None = None
    gpus: int = Field(default=0, ge=0)
    nodes: int = Field(default=1, ge=1)
    walltime: int | float | str | None = None
    retries: int = Field(default=0, ge=0)
    sites: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    checkpoint: Literal["criu"] | None = None
    checkpoint_every: int | float | str | None = None
    container: Annotated[ImageModel, BeforeValidator(_image_shorthand)] | None = None
    sweep: dict[str, list[int | float | str] | RangeModel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _criu_is_not_for_containers(self) -> TaskModel:
        if self.container is not None and self.checkpoint == "criu":
            raise ValueError("checkpoint = 'criu' cannot dump a container; drop one of container/checkpoint")
        return self

    def image(self) -> Image | None:
        """The task's container image as an ``ms.Image``."""
        return None if self.container is None else Image(**self.container.model_dump())


class CampaignFile(_Model):
    """A whole campaign file."""

    campaign: CampaignSection
    sites: list[SiteModel] = Field(default_factory=list)
    tasks: list[TaskModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ExpandedTask:
    """One concrete task after sweeps: its name, its model, and the values it was given."""

    name: str
    base: str
    model: TaskModel
    values: dict[str, Any] = field(default_factory=dict)

    def render(self, text: str) -> str:
        """Fill ``{key}`` placeholders with this expansion's values."""
        return text.format(**self.values) if self.values else text


@dataclass(frozen=True, slots=True)
class LoadedCampaign:
    """A validated campaign file and its tasks after sweeps, dependencies first."""

    path: Path
    spec: CampaignFile
    tasks: list[ExpandedTask]
    dependencies: dict[str, list[str]]

    @property
    def journal(self) -> Path:
        """The journal path (relative paths are relative to the file)."""
        journal = self.spec.campaign.journal or f"{self.spec.campaign.name}.db"
        return (self.path.parent / journal).resolve()


class CampaignFileError(ConfigurationError):
    """A campaign file has problems; the message lists all of them, one per line."""

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


def _sweep_values(spec: list[int | float | str] | RangeModel) -> list[Any]:
    return list(range(*spec.range)) if isinstance(spec, RangeModel) else list(spec)


def expand(task: TaskModel) -> Iterator[ExpandedTask]:
    """The concrete tasks of one entry: the product of its sweep values (one task if no sweep)."""
    keys = sorted(task.sweep)
    for combo in itertools.product(*(_sweep_values(task.sweep[k]) for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        name = task.name.format(**values) if values else task.name
        yield ExpandedTask(name=name, base=task.name, model=task, values=values)


def _line_of(text: str, loc: tuple[str | int, ...]) -> int:
    """Best-effort line of a field: the n-th ``[[table]]`` header, then the key inside it."""
    lines = text.splitlines()
    if not loc:
        return 1
    table = str(loc[0])
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    key = next((str(part) for part in loc[1:] if isinstance(part, str)), None)
    header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    if not starts:
        return 1
    start = starts[min(index, len(starts) - 1)]
    if key is not None:
        for i in range(start + 1, len(lines)):
            if re.match(r"^\s*\[", lines[i]):
                break
            if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
                return i + 1
    return start + 1


def _where(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_campaign_file(path: str | Path) -> LoadedCampaign:
    """Read, validate and expand a campaign file; raise CampaignFileError with every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CampaignFileError(f"{path}: cannot read: {exc.strerror}", problems=[str(exc)]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = f"{path}:{getattr(exc, 'lineno', 1)}: not valid TOML: {exc}"
        raise CampaignFileError(problem, problems=[problem]) from exc
    return check_data(data, path, text)


def check_data(data: dict[str, Any], path: Path, text: str = "") -> LoadedCampaign:
    """Validate already-parsed campaign data (`text` is the source, for line numbers)."""
    problems: list[str] = []
    try:
        spec = CampaignFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not _union_member(p))
            problems.append(f"{path}:{_line_of(text, loc)}: {_where(loc)}: {error['msg']}")
        raise CampaignFileError(_summary(path, problems), problems=problems) from None
    tasks, dependencies = _check_semantics(path, text, spec, problems)
    if problems:
        raise CampaignFileError(_summary(path, problems), problems=problems)
    return LoadedCampaign(path=path, spec=spec, tasks=tasks, dependencies=dependencies)


def _union_member(part: str | int) -> bool:
    """Parts pydantic adds to a location to say which union member it tried (not fields of the file)."""
    site_kinds = ("local", "slurm", "globus_compute", "gridengine", "pbs")
    return isinstance(part, str) and (part in site_kinds or "[" in part or part.endswith("Model"))


def _summary(path: Path, problems: list[str]) -> str:
    return f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems)


def _check_semantics(path: Path, text: str, spec: CampaignFile, problems: list[str]
                     ) -> tuple[list[ExpandedTask], dict[str, list[str]]]:
    def report(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(f"{path}:{_line_of(text, loc)}: {_where(loc)}: {message}")

    site_names = [s.name for s in spec.sites]
    for i, site in enumerate(spec.sites):
        if site_names.count(site.name) > 1:
            report(("sites", i, "name"), f"site name {site.name!r} is used more than once")
        if isinstance(site, SlurmSiteModel):
            if not Path(site.slurm_conf).is_file():
                report(("sites", i, "slurm_conf"), f"file {site.slurm_conf} does not exist")
            if not Path(site.shared_dir).is_dir():
                report(("sites", i, "shared_dir"), f"directory {site.shared_dir} does not exist")
        if isinstance(site, GridEngineSiteModel | PBSSiteModel) and not Path(site.shared_dir).is_dir():
            report(("sites", i, "shared_dir"), f"directory {site.shared_dir} does not exist")
        key = site.authkey_file if isinstance(site, GlobusComputeSiteModel) else None
        if key and not Path(key).is_file():
            report(("sites", i, "authkey_file"), f"file {key} does not exist")
    expanded: list[ExpandedTask] = []
    by_base: dict[str, list[str]] = {}
    for i, task in enumerate(spec.tasks):
        try:
            mine = list(expand(task))
            for item in mine:
                [item.render(arg) for arg in task.command]
        except (KeyError, IndexError, ValueError) as exc:
            report(("tasks", i, "sweep"), f"sweep does not expand the name or command: {exc!r}")
            continue
        if not mine:
            report(("tasks", i, "sweep"), "sweep expands to no task")
        for unknown in sorted(set(task.sites) - set(site_names)) if spec.sites else []:
            report(("tasks", i, "sites"), f"unknown site {unknown!r} (sites: {', '.join(site_names)})")
        by_base.setdefault(task.name, []).extend(item.name for item in mine)
        expanded.extend(mine)
    names = [t.name for t in expanded]
    for name in sorted({n for n in names if names.count(n) > 1}):
        report(("tasks",), f"task name {name!r} occurs more than once after sweeps (put the sweep keys in "
                           "swept names, e.g. 'sim-{x}')")
    dependencies: dict[str, list[str]] = {}
    for i, task in enumerate(spec.tasks):
        for dep in task.depends_on:
            if dep not in by_base and dep not in names:
                report(("tasks", i, "depends_on"), f"depends on {dep!r}, which is not a task of this file")
    for item in expanded:
        deps: list[str] = []
        for dep in item.model.depends_on:
            deps.extend(by_base.get(dep, [dep] if dep in names else []))
        dependencies[item.name] = deps
    order = _topological(expanded, dependencies, report)
    return order, dependencies


def _topological(tasks: list[ExpandedTask], deps: dict[str, list[str]],
                 report: Any) -> list[ExpandedTask]:
    by_name = {t.name: t for t in tasks}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[ExpandedTask] = []
    cycle: list[str] = []

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or cycle:
            return
        if state.get(name) == 1:
            cycle.extend(trail[trail.index(name):] + [name])
            return
        state[name] = 1
        for dep in deps.get(name, []):
            if dep in by_name:
                visit(dep, [*trail, name])
        state[name] = 2
        order.append(by_name[name])

    for task in tasks:
        visit(task.name, [])
    if cycle:
        report(("tasks",), "dependencies form a cycle: " + " -> ".join(cycle))
    return order
