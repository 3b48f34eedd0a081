"""The report's pure parts: how a pilot block's attempts share its Gantt row."""

from __future__ import annotations

from metasched.report import sub_rows


def test_attempts_that_ran_at_once_get_sub_rows_of_their_own() -> None:
    rows, count = sub_rows([(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.5, 5.0), (1.5, 1.5)])
    assert count == 3  # at 1.5 s three ran at once
    assert len({rows[0], rows[1], rows[4]}) == 3  # the three running at 1.5 s
    assert rows[2] in (rows[0], rows[4])  # starts as the first ends: a sub-row free again by then
    assert rows[3] != rows[2]  # (2, 4) still runs at 3.5 s


def test_sub_rows_are_as_few_as_the_most_running_at_once() -> None:
    spans = [(float(i % 7), float(i % 7) + 1.0 + (i % 3)) for i in range(200)]
    rows, count = sub_rows(spans)
    most = max(sum(start <= t < end for start, end in spans) for t in [x / 4 for x in range(40)])
    assert count == most
    for row in range(count):  # none overlapping another on its sub-row
        mine = sorted(span for span, r in zip(spans, rows, strict=True) if r == row)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:], strict=False))


def test_no_attempts_no_sub_rows() -> None:
    assert sub_rows([]) == ([], 0)
