"""The scheduler test matrix: one conformance suite and the fault-injection tests against every site kind.

`run` executes the suite with pytest (from a checkout: the suite lives in ``tests/``) and records each
test's outcome and duration; `cells` maps them onto rows (scheduler x version) and columns (capability);
`render_markdown` writes the table of docs/test-matrix.md. The columns are declared here; the rows (and
the fault tests that fill their columns) are declared by each installed site kind (``SiteKind.matrix_rows``),
so a capability nobody tests shows as "not tested" rather than disappearing.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metasched.sites.kind import MatrixRow

CONTRACT = "tests/contract/test_site_contract.py"

#: Capability columns: the conformance suite's tests, then fault injection.
CONTRACT_COLUMNS = {
    "test_function_and_command_results": "results",
    "test_failure_carries_the_remote_traceback": "remote failure",
    "test_cancel_stops_a_running_task": "cancel",
    "test_walltime_stops_tasks_and_says_so": "walltime kill",
    "test_retry_after_a_failure": "retry",
    "test_many_tasks": "many tasks",
}
FAULT_COLUMNS = ("server stopped", "server crash, state lost", "job deleted outside", "job purged from queue",
                 "node lost", "job run twice", "parsers (recorded output)")
COLUMNS = (*CONTRACT_COLUMNS.values(), *FAULT_COLUMNS)


@dataclass(frozen=True, slots=True)
class TestResult:
    """One pytest test: its node id, outcome (passed, failed, skipped) and call duration."""

    nodeid: str
    outcome: str
    seconds: float
    message: str = ""


class Recorder:
    """A pytest plugin that keeps every test's outcome (the failing phase wins) and call duration."""

    def __init__(self) -> None:
        self.results: dict[str, TestResult] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        """Record setup failures/skips and the call phase (pytest hook)."""
        if report.when == "call" or report.outcome != "passed":
            old = self.results.get(report.nodeid)
            if old is not None and old.outcome != "passed":
                return
            message = ""
            if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                message = str(report.longrepr[2])
            elif report.outcome == "failed":
                message = str(report.longrepr).splitlines()[-1][:300] if report.longrepr else ""
            self.results[report.nodeid] = TestResult(report.nodeid, report.outcome,
                                                     round(report.duration, 2), message)


def selected_tests(rows: Iterable[MatrixRow]) -> list[str]:
    """The pytest arguments (node ids) covering these rows."""
    rows = list(rows)
    kinds = [r.contract_kind for r in rows if r.contract_kind]
    tests = [f"{CONTRACT}::{test}[{kind}]" for kind in kinds for test in CONTRACT_COLUMNS]
    faults = [test for r in rows for test in r.faults.values()]
    return [*tests, *dict.fromkeys(faults)]


def run(rows: Sequence[MatrixRow], *, root: Path, extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None) -> dict[str, TestResult]:
    """Run the rows' tests with pytest inside this process (cwd `root`, a checkout); return the results."""
    import pytest

    recorder = Recorder()
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.chdir(root)
    os.environ.update(env or {})
    try:
        pytest.main(["-q", "-p", "no:cacheprovider", *extra_args, *selected_tests(rows)], plugins=[recorder])
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return recorder.results


def _result_for(nodeid: str, results: Mapping[str, TestResult]) -> TestResult | None:
    """The result of a test node id, or the combined result of every test under a file or prefix."""
    if nodeid in results:
        return results[nodeid]
    under = [r for key, r in results.items() if key.startswith(nodeid + "::") or key.startswith(nodeid + "[")]
    if not under:
        return None
    worst = next((r for r in under if r.outcome == "failed"), None) or next(
        (r for r in under if r.outcome == "skipped"), None)
    return TestResult(nodeid, worst.outcome if worst else "passed", round(sum(r.seconds for r in under), 2),
                      worst.message if worst else f"{len(under)} tests")


def cells(rows: Sequence[MatrixRow], results: Mapping[str, TestResult]) -> list[dict[str, Any]]:
    """Each row with one cell per column: outcome ("pass", "fail", "skipped", "not tested", "n/a")."""
    table = []
    for row in rows:
        row_cells: dict[str, dict[str, Any]] = {}
        for test, column in CONTRACT_COLUMNS.items():
            nodeid = f"{CONTRACT}::{test}[{row.contract_kind}]" if row.contract_kind else ""
            row_cells[column] = _cell(nodeid, results)
        for column in FAULT_COLUMNS:
            if column in row.not_applicable:
                row_cells[column] = {"outcome": "n/a"}
            else:
                row_cells[column] = _cell(row.faults.get(column, ""), results)
        table.append({**asdict(row), "faults": dict(row.faults), "cells": row_cells})
    return table


def _cell(nodeid: str, results: Mapping[str, TestResult]) -> dict[str, Any]:
    result = _result_for(nodeid, results) if nodeid else None
    if result is None:
        return {"outcome": "not tested"}
    outcome = {"passed": "pass", "failed": "fail"}.get(result.outcome, result.outcome)
    return {"outcome": outcome, "seconds": result.seconds, "test": nodeid, "message": result.message}


_SYMBOL = {"pass": "pass", "fail": "**FAIL**", "skipped": "skipped", "not tested": "not tested", "n/a": "n/a"}


def render_markdown(table: Sequence[Mapping[str, Any]], *, generated: str, command: str,
                    user_sites: str | None = None) -> str:
    """docs/test-matrix.md: the table (outcome and seconds per cell), the rows' notes, how to regenerate.

    `user_sites`: the campaign file whose sites were tested (None: the containerized test sites).
    """
    against = (f"against the sites of {user_sites}" if user_sites
               else "against the containerized sites of docs/test-sites.md")
    lines = [
        "# Scheduler test matrix",
        "",
        f"Generated {generated} by `{command}`, {against}.",
        "Each cell is one test against that site: pass (with its duration in seconds),",
        "**FAIL**, skipped (with why, below), *not tested* (no test exercises it there yet) or n/a (the",
        "capability does not exist for that kind of site). The same data as JSON: test-matrix.json.",
        "",
        "| row | scheduler | version | site | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (4 + len(COLUMNS)),
    ]
    notes: list[str] = []
    for row in table:
        cells_text = []
        for column in COLUMNS:
            cell = row["cells"][column]
            text = _SYMBOL.get(cell["outcome"], cell["outcome"])
            if cell["outcome"] in ("pass", "fail") and "seconds" in cell:
                text += f" {cell['seconds']:.1f} s"
            if cell["outcome"] in ("fail", "skipped") and cell.get("message"):
                notes.append(f"- {row['name']} / {column}: {cell['message']}")
            cells_text.append(text)
        lines.append(f"| {row['name']} | {row['scheduler']} | {row['version']} | {row['site']} | "
                     + " | ".join(cells_text) + " |")
        if row.get("note"):
            notes.append(f"- {row['name']}: {row['note']}")
    if notes:
        lines += ["", "Notes:", "", *notes]
    if user_sites:
        lines += ["", f"Regenerate with `{command}` from a metasched checkout.", ""]
    else:
        lines += ["",
                  "Regenerate with `make matrix` (brings every containerized site up). Check your own sites",
                  "with `metasched testmatrix --sites YOUR.toml` from a checkout (see docs/test-sites.md).",
                  ""]
    return "\n".join(lines)


def user_rows(site_names: Sequence[str]) -> tuple[MatrixRow, ...]:
    """Rows for a user's own sites (from a campaign file): the conformance suite only."""
    return tuple(MatrixRow(name, "your site", "-", name, f"user-{name}", not_applicable=FAULT_COLUMNS,
                     note="fault injection needs the containerized test sites (make matrix)")
                 for name in site_names)


def generated_now() -> str:
    """A UTC timestamp and the machine, for the report header."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp} ({platform.system()} {platform.machine()}, Python {platform.python_version()})"


def built_in_rows() -> tuple[MatrixRow, ...]:
    """The rows every installed site kind declares, in kind order."""
    from metasched.sites.registry import kinds

    return tuple(row for kind in kinds() for row in kind.matrix_rows)


def rows_named(names: Sequence[str]) -> tuple[MatrixRow, ...]:
    """The built-in rows with these names (all when empty); unknown names raise ValueError listing them."""
    rows = built_in_rows()
    if not names:
        return rows
    known = {r.name: r for r in rows}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown matrix row(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)
