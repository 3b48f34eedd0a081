"""The test matrix's mapping of test results onto rows x capabilities, and its Markdown."""

from __future__ import annotations

import pytest

from metasched import testmatrix as tm


def _results(*items: tuple[str, str, float]) -> dict[str, tm.TestResult]:
    return {nodeid: tm.TestResult(nodeid, outcome, seconds, "why" if outcome != "passed" else "")
            for nodeid, outcome, seconds in items}


def test_contract_and_fault_cells_come_from_their_tests() -> None:
    [zeta] = tm.rows_named(["torque-wrappers"])
    results = _results(
        (f"{tm.CONTRACT}::test_many_tasks[torque-wrappers]", "passed", 4.0),
        (f"{tm.CONTRACT}::test_cancel_stops_a_running_task[torque-wrappers]", "failed", 2.5),
        (zeta.faults["server stopped"], "passed", 30.0),
        ("tests/unit/test_pbs_parsers.py::test_torque_qstat_queued_running_completed", "passed", 0.01))
    [row] = tm.cells([zeta], results)
    cells = row["cells"]
    assert cells["many tasks"] == {"outcome": "pass", "seconds": 4.0,
                                   "test": f"{tm.CONTRACT}::test_many_tasks[torque-wrappers]", "message": ""}
    assert cells["cancel"]["outcome"] == "fail"
    assert cells["results"] == {"outcome": "not tested"}  # not in this run
    assert cells["server stopped"]["outcome"] == "pass"
    assert cells["node lost"] == {"outcome": "not tested"}  # no fault test for it at zeta


def test_file_level_entries_combine_their_tests_and_local_rows_mark_faults_not_applicable() -> None:
    [alpha, local] = tm.rows_named(["slurm-22.05", "local"])
    results = _results(("tests/unit/test_slurm_parsers.py::test_a", "passed", 0.5),
                       ("tests/unit/test_slurm_parsers.py::test_b", "skipped", 0.0))
    [alpha_row, local_row] = tm.cells([alpha, local], results)
    assert alpha_row["cells"]["parsers (recorded output)"]["outcome"] == "skipped"
    assert local_row["cells"]["server stopped"] == {"outcome": "n/a"}


def test_markdown_has_a_row_per_scheduler_and_notes_for_failures() -> None:
    rows = tm.rows_named(["openpbs", "gridengine-8.1.9"])
    results = _results(
        ("tests/unit/test_pbs_parsers.py::test_openpbs_held_queued_and_deleted_before_running", "passed",
         0.02),
        (f"{tm.CONTRACT}::test_walltime_stops_tasks_and_says_so[gridengine]", "failed", 9.0))
    text = tm.render_markdown(tm.cells(rows, results), generated="now", command="make matrix")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| row |"))
    assert header.count("|") == 4 + len(tm.COLUMNS) + 1
    openpbs = next(line for line in lines if line.startswith("| openpbs |"))
    assert "pass 0.0 s" in openpbs
    assert "not tested" in openpbs
    assert "- gridengine-8.1.9 / walltime kill: why" in lines
    assert any(line.startswith("- openpbs: no OpenPBS server") for line in lines)


def test_selected_tests_and_unknown_rows() -> None:
    [eta] = tm.rows_named(["slurm-24.11"])
    selected = tm.selected_tests([eta])
    assert f"{tm.CONTRACT}::test_results[slurm-24.11]" not in selected
    assert f"{tm.CONTRACT}::test_function_and_command_results[slurm-24.11]" in selected
    assert eta.faults["job purged from queue"] in selected
    with pytest.raises(ValueError, match=r"unknown matrix row\(s\) lsf"):
        tm.rows_named(["lsf"])
