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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from metasched.errors import ConfigurationError
from metasched.placement import DefaultPolicy, policy_named
from metasched.records import Image
from metasched.sites.base import NamesLocalPaths
from metasched.sites.registry import default_sites, installed_kinds, kind_named
from metasched.sites.schema import StoreOption, validate_site


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HEDGING_FIELDS = ("hedge_after_s", "move_after_s", "hedge_budget")  # DefaultPolicy's, in [campaign]


class CampaignSection(_Model):
    """The ``[campaign]`` table."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    journal: str | None = None
    policy: str = "default"  # a built-in name, or one an installed package declares (checked below)
    store: StoreOption = None
    data_threshold: int = Field(default=100_000, ge=0)
    ray_node_ip: str | None = None  # where pilot blocks reach the embedded Ray head (docs/pilots.md)
    hedge_after_s: float | None = Field(default=None, gt=0)  # the default policy's hedging (placement.md)
    move_after_s: float | None = Field(default=None, gt=0)
    hedge_budget: float | None = Field(default=None, ge=0, le=1)

    def placement_policy(self) -> str | DefaultPolicy:
        """The policy by name, or the default one with the hedging settings the table gives."""
        hedging = {k: v for k in HEDGING_FIELDS if (v := getattr(self, k)) is not None}
        return DefaultPolicy(**hedging) if hedging else self.policy


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
    """A whole campaign file; each ``[[sites]]`` table is validated by its kind's config class."""

    campaign: CampaignSection
    sites: list[dict[str, Any]] = Field(default_factory=list)
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
    """A validated campaign file: its sites (config records of their kinds) and tasks after sweeps."""

    path: Path
    spec: CampaignFile
    sites: list[Any]
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

    def report(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(f"{path}:{_line_of(text, loc)}: {_where(loc)}: {message}")

    spec: CampaignFile | None = None
    try:
        spec = CampaignFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            report(tuple(p for p in error["loc"] if not _union_member(p)), _message(error))
    tables: list[Any] = data["sites"] if isinstance(data.get("sites"), list) else []
    sites = [_site(i, table, report) for i, table in enumerate(tables) if isinstance(table, dict)]
    if spec is None:
        raise CampaignFileError(_summary(path, problems), problems=problems)
    tasks, dependencies = _check_semantics(spec, [s for s in sites if s is not None], report)
    if problems:
        raise CampaignFileError(_summary(path, problems), problems=problems)
    return LoadedCampaign(path=path, spec=spec, sites=[s for s in sites if s is not None] or default_sites(),
                          tasks=tasks, dependencies=dependencies)


def _site(index: int, table: dict[str, Any], report: Report) -> Any:
    """One ``[[sites]]`` table as its kind's config record (None if it is bad: its problems reported)."""
    where: tuple[str | int, ...] = ("sites", index)
    kind = table.get("kind")
    if not isinstance(kind, str):
        report((*where, "kind"), f"every site needs a kind (installed kinds: {', '.join(installed_kinds())})")
        return None
    try:
        config = kind_named(kind).config
    except ConfigurationError as exc:
        report((*where, "kind"), str(exc))
        return None
    try:
        return validate_site(config, {k: v for k, v in table.items() if k != "kind"})
    except ValidationError as exc:
        for error in exc.errors():
            report((*where, *(p for p in error["loc"] if not _union_member(p))), _message(error))
    except ConfigurationError as exc:  # the config class's own checks, across fields
        report(where, str(exc))
    return None


def _message(error: Any) -> str:
    """Pydantic's message, in the words it uses for models too (dataclass configs say it differently)."""
    if error["type"] == "unexpected_keyword_argument":
        return "Extra inputs are not permitted"
    return str(error["msg"]).removeprefix("Value error, ")


def _union_member(part: str | int) -> bool:
    """Parts pydantic adds to a location to say which union member or validator it tried (not fields)."""
    return isinstance(part, str) and ("[" in part or part.endswith(("Model",
                                                                    "Store")) or part == "function-after")


def _summary(path: Path, problems: list[str]) -> str:
    return f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems)


Report = Callable[[tuple[str | int, ...], str], None]


def _check_semantics(spec: CampaignFile, sites: list[Any], report: Report
                     ) -> tuple[list[ExpandedTask], dict[str, list[str]]]:
    try:
        policy_named(spec.campaign.policy)
    except ValueError as exc:
        report(("campaign", "policy"), str(exc))
    hedging = [k for k in HEDGING_FIELDS if getattr(spec.campaign, k) is not None]
    if hedging and spec.campaign.policy != "default":
        report(("campaign", hedging[0]),
               f"only the default policy hedges (policy is {spec.campaign.policy!r})")
    elif hedging:
        try:
            spec.campaign.placement_policy()
        except ValueError as exc:
            report(("campaign", hedging[0]), str(exc))
    site_names = [str(table.get("name")) for table in spec.sites]
    for i, name in enumerate(site_names):
        if site_names.count(name) > 1:
            report(("sites", i, "name"), f"site name {name!r} is used more than once")
    for i, site in enumerate(sites):
        for field_name, problem in _missing_paths(site):
            report(("sites", site_names.index(site.name) if site.name in site_names else i, field_name),
                   problem)
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


def _missing_paths(site: Any) -> list[tuple[str, str]]:
    """Paths a site's config names on this machine that do not exist, by field (the kind says which)."""
    problems = []
    for field_name, path, want in site.local_paths() if isinstance(site, NamesLocalPaths) else []:
        exists = Path(path).is_dir() if want == "directory" else Path(path).is_file()
        if not exists:
            problems.append((field_name, f"{want} {path} does not exist"))
    return problems


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
