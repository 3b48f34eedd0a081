"""Campaign reports from a journal: an HTML page with a summary table and PNG figures (matplotlib).

- ``gantt.png``: every attempt as a bar on its site's lane: queue wait (light) from submission to the
  moment the site reported it running, then run time (dark) to its end; attempts whose site never
  reports "running" separately (the local site) are drawn as run time only. A pilot site's blocks
  come first on its lane, a row each (grey: queued, then joined until they ended), with the attempts
  that ran in the block drawn inside its row, on as many sub-rows as ran at once.
- ``utilization.png``: attempts in flight per site over time.
- ``waits.png``: distribution of queue waits per site (where the site reports them; as observed by
  polling, so with the site's poll interval as resolution).
- ``usage.png``: wall time and CPU time of the measured attempts per site (metasched.resource_use),
  with the tables of resource use per site and of the longest attempts.

The summary table gives per site the attempts by outcome, the mean queue wait, the mean wait placement
predicted when it chose the site (journaled with each attempt, ``metasched.placement.explain``) and the
mean error of that prediction (where the site reports when attempts start), and the mean run time.
"""

from __future__ import annotations

import heapq
import html
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metasched import resource_use  # noqa: E402
from metasched.journal import Journal  # noqa: E402
from metasched.journal_schema import SiteUsage  # noqa: E402
from metasched.placement import predicted_wait  # noqa: E402
from metasched.scheduler.blocks import journaled_blocks  # noqa: E402

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptSpan:
    """One attempt's life, in seconds since the campaign's first submission."""

    attempt_id: str
    task_id: str
    task_name: str
    site: str
    state: str
    submitted: float
    started: float | None
    ended: float | None
    predicted_wait: float | None = None  # what placement predicted (metasched.placement.explain)
    native_id: str | None = None  # its job at the site (in pilot mode: its block's)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteRow:
    """A line of the summary table."""

    site: str
    attempts: int
    succeeded: int
    failed: int
    lost: int
    moved: int
    mean_wait_s: float | None
    mean_run_s: float | None
    mean_predicted_wait_s: float | None = None
    wait_error_s: float | None = None  # mean |predicted - actual| where both are known


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockSpan:
    """One pilot block's life, in seconds since the campaign's first submission."""

    site: str
    block_id: str
    job_id: str
    submitted: float
    joined: float | None  # its Ray nodes joined the campaign's head
    ended: float | None


def read_spans(journal: Path) -> list[AttemptSpan]:
    """Every attempt of a journal, with its running time from the RUNNING transition if there is one."""
    return read_campaign(journal)[0]


def read_campaign(journal: Path) -> tuple[list[AttemptSpan], list[BlockSpan]]:
    """Every attempt (see ``read_spans``) and every pilot block journaled with its times, on one clock."""
    with Journal(journal).open(read_only=True) as stored:
        rows = stored.attempt_times()
        blocks = journaled_blocks(stored)
    if not rows:
        return [], []
    origin = min(r[5] for r in rows)
    spans = [AttemptSpan(attempt_id=a, task_id=t, task_name=n, site=s, state=st, submitted=sub - origin,
                         started=run - origin if run is not None else None,
                         ended=end - origin if end is not None else None,
                         predicted_wait=predicted_wait(placed or ""), native_id=job)
             for a, t, n, s, st, sub, end, run, placed, job in rows]

    def since(at: float | None) -> float | None:
        return None if at is None else at - origin

    block_spans = []
    for site, records in sorted(blocks.items()):
        for b in records:
            submitted = getattr(b, "submitted_at", None)  # older journals kept no block times
            if submitted is not None:
                block_spans.append(BlockSpan(site=site, block_id=b.block_id, job_id=b.job_id,
                                             submitted=submitted - origin,
                                             joined=since(getattr(b, "joined_at", None)),
                                             ended=since(getattr(b, "ended_at", None))))
    return spans, block_spans


def summarize(spans: list[AttemptSpan]) -> list[SiteRow]:
    """Per-site counts and mean wait/run times."""
    by_site: dict[str, list[AttemptSpan]] = defaultdict(list)
    for span in spans:
        by_site[span.site].append(span)
    rows = []
    for site, items in sorted(by_site.items()):
        waits = [s.started - s.submitted for s in items if s.started is not None]
        runs = [s.ended - (s.started if s.started is not None else s.submitted)
                for s in items if s.ended is not None]
        predicted = [s.predicted_wait for s in items if s.predicted_wait is not None]
        errors = [abs(s.started - s.submitted - s.predicted_wait) for s in items
                  if s.started is not None and s.predicted_wait is not None]
        rows.append(SiteRow(
            site=site, attempts=len(items), succeeded=sum(s.state == "succeeded" for s in items),
            failed=sum(s.state == "failed" for s in items), lost=sum(s.state == "lost" for s in items),
            moved=sum(s.state == "checkpointed" for s in items),
            mean_wait_s=sum(waits) / len(waits) if waits else None,
            mean_run_s=sum(runs) / len(runs) if runs else None,
            mean_predicted_wait_s=sum(predicted) / len(predicted) if predicted else None,
            wait_error_s=sum(errors) / len(errors) if errors else None,
        ))
    return rows


@dataclass(frozen=True, slots=True)
class Drawn:
    """What the Gantt chart drew (for the page's data attributes, which tests read)."""

    bars: int  # attempts
    arrows: int  # from a checkpoint to the attempt that restored from it
    block_bars: int  # pilot blocks
    in_blocks: int  # attempts drawn inside their block's row


def sub_rows(spans: Sequence[tuple[float, float]]) -> tuple[list[int], int]:
    """Each (start, end) interval's sub-row, none overlapping another on it, and how many sub-rows.

    Intervals go in order of start to the sub-row freed first (the fewest sub-rows there can be).
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    row_of, rows = [0] * len(spans), 0
    free_at: list[tuple[float, int]] = []  # (when a sub-row is free again, its number)
    for i in order:
        start, end = spans[i]
        if free_at and free_at[0][0] <= start:
            _, row = heapq.heappop(free_at)
        else:
            row, rows = rows, rows + 1
        row_of[i] = row
        heapq.heappush(free_at, (max(end, start), row))
    return row_of, rows


def _gantt(spans: list[AttemptSpan], sites: list[str], path: Path, blocks: Sequence[BlockSpan] = ()) -> Drawn:
    """Draw the Gantt chart.

    An attempt that ended with a checkpoint gets an arrow to the next attempt of its task, which
    restored from it (at the same or another site). A pilot site's blocks come first on its lane, a row
    each in grey (light: queued, dark: its Ray nodes joined); the attempts that ran in a block (its job
    id theirs) are drawn inside its row, on sub-rows (``sub_rows``), running time only.
    """
    block_of = {(b.site, b.job_id): b for b in blocks if b.job_id}
    inside: dict[str, list[AttemptSpan]] = defaultdict(list)
    in_rows: list[AttemptSpan] = []  # a row each: attempts not run in a block
    for span in spans:
        if (block := block_of.get((span.site, span.native_id or ""))) is not None:
            inside[block.block_id].append(span)
        else:
            in_rows.append(span)
    ordered: list[AttemptSpan | BlockSpan] = sorted(
        [*blocks, *in_rows], key=lambda s: (sites.index(s.site), isinstance(s, AttemptSpan), s.submitted))
    height = 2.0 + 0.12 * len(ordered) + 0.5 * len(blocks)  # a block's row holds its attempts: taller
    fig, ax = plt.subplots(figsize=(10, min(height, 30)))
    end_of_campaign = max((s.ended or s.submitted) for s in [*ordered, *spans])
    y_of: dict[str, float] = {}
    bars = block_bars = 0

    def attempt_bar(span: AttemptSpan, y: float, height: float, *, wait: bool) -> None:
        colour = _COLOURS[sites.index(span.site) % len(_COLOURS)]
        end = span.ended if span.ended is not None else end_of_campaign
        start_run = span.started if span.started is not None else span.submitted
        if wait and span.started is not None:
            ax.barh(y, start_run - span.submitted, left=span.submitted, height=height, color=colour,
                    alpha=0.25)
        ok = span.state in ("succeeded", "checkpointed")
        ax.barh(y, max(end - start_run, 1e-3), left=start_run, height=height, color=colour,
                alpha=0.9 if ok else 0.5, hatch=None if ok else "////",
                edgecolor=colour if ok else "black", linewidth=0.3)
        y_of[span.attempt_id] = y

    for row, item in enumerate(ordered):
        if isinstance(item, AttemptSpan):
            attempt_bar(item, row, 0.8, wait=True)
            bars += 1
            continue
        end = item.ended if item.ended is not None else end_of_campaign
        joined = item.joined if item.joined is not None else end
        ax.barh(row, max(joined - item.submitted, 1e-3), left=item.submitted, height=0.8, color="grey",
                alpha=0.3)
        if item.joined is not None:
            ax.barh(row, max(end - joined, 1e-3), left=joined, height=0.8, color="dimgrey", alpha=0.5)
        block_bars += 1
        ran = inside.get(item.block_id, [])
        lanes, count = sub_rows([(s.started if s.started is not None else s.submitted,
                                  s.ended if s.ended is not None else end_of_campaign) for s in ran])
        for span, lane in zip(ran, lanes, strict=True):
            attempt_bar(span, row - 0.4 + 0.8 * (lane + 0.5) / count, 0.7 / count, wait=False)
            bars += 1
    arrows = 0
    for span in spans:
        if span.state != "checkpointed" or span.ended is None:
            continue
        later = [s for s in spans if s.task_id == span.task_id and s.submitted >= span.ended - 1e-6
                 and s.attempt_id != span.attempt_id]
        if not later:
            continue
        nxt = min(later, key=lambda s: s.submitted)
        restored_at = nxt.started if nxt.started is not None else nxt.submitted
        ax.annotate("", xy=(restored_at, y_of[nxt.attempt_id]), xytext=(span.ended, y_of[span.attempt_id]),
                    arrowprops={"arrowstyle": "->", "color": "black", "linewidth": 1.2})
        arrows += 1
    centres, bounds = [], []
    for site in sites:
        rows = [i for i, s in enumerate(ordered) if s.site == site]
        centres.append((rows[0] + rows[-1]) / 2)
        bounds.append(rows[-1] + 0.5)
    for bound in bounds[:-1]:
        ax.axhline(bound, color="grey", linewidth=0.8)
    ax.set_yticks(centres, [_lane(site, spans, blocks) for site in sites])
    ax.set_ylim(len(ordered) - 0.5, -0.5)
    ax.set_xlabel("seconds since the first submission")
    ax.set_title("attempts by site, one row each (light: queue wait, dark: running, hatched: failed or "
                 "lost;\narrows: a checkpoint and the attempt that restored from it; grey: pilot blocks, "
                 "each with the attempts it ran)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Drawn(bars, arrows, block_bars, sum(len(v) for v in inside.values()))


def _lane(site: str, spans: list[AttemptSpan], blocks: Sequence[BlockSpan]) -> str:
    count = sum(s.site == site for s in blocks)
    return f"{site} ({sum(s.site == site for s in spans)}" + (f", {count} blocks)" if count else ")")


def _utilization(spans: list[AttemptSpan], sites: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for i, site in enumerate(sites):
        # One step per 0.1 s: an attempt ending and the next starting in the same scheduler step are
        # stamped microseconds apart, which would draw as a dip.
        deltas: dict[float, int] = defaultdict(int)
        for span in (s for s in spans if s.site == site):
            deltas[round(span.started if span.started is not None else span.submitted, 1)] += 1
            if span.ended is not None:
                deltas[round(span.ended, 1)] -= 1
        times, level, levels = [0.0], 0, [0]
        for t in sorted(deltas):
            level += deltas[t]
            times.append(t)
            levels.append(level)
        ax.step(times, levels, where="post", label=site, color=_COLOURS[i % len(_COLOURS)])
    ax.set_xlabel("seconds since the first submission")
    ax.set_ylabel("attempts running")
    ax.set_title("utilization per site")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _waits(spans: list[AttemptSpan], sites: list[str], path: Path) -> bool:
    waits = {site: [s.started - s.submitted for s in spans if s.site == site and s.started is not None]
             for site in sites}
    waits = {site: values for site, values in waits.items() if values}
    if not waits:
        return False
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.hist(list(waits.values()), bins=20, label=list(waits), stacked=False)
    ax.set_xlabel("queue wait (s)")
    ax.set_ylabel("attempts")
    ax.set_title("queue wait distribution per site")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _usage(used: list[SiteUsage], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = range(len(used))
    for shift, label, colour, hours in ((-0.2, "wall time", "#9ecae1", [u.wall_s / 3600 for u in used]),
                                        (0.2, "CPU time", "#08519c", [u.cpu_s / 3600 for u in used])):
        ax.bar([i + shift for i in x], hours, width=0.4, label=label, color=colour)
    ax.set_xticks(list(x), [f"{u.site} ({u.attempts})" for u in used])
    ax.set_ylabel("hours")
    ax.set_title("resource use per site (measured attempts)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


SUMMARY_COLUMNS = ("site", "attempts", "succeeded", "failed", "lost", "checkpointed and moved on",
                   "mean wait (s)", "mean predicted wait (s)", "wait prediction error (s)", "mean run (s)")


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(journal: Path, out_dir: Path) -> Path:
    """Write index.html and the PNGs into `out_dir`; return the HTML path."""
    spans, blocks = read_campaign(journal)
    if not spans:
        raise ValueError(f"journal {journal} has no attempts to report on")
    out_dir.mkdir(parents=True, exist_ok=True)
    sites = sorted({s.site for s in spans} | {b.site for b in blocks})
    drawn = _gantt(spans, sites, out_dir / "gantt.png", blocks)
    _utilization(spans, sites, out_dir / "utilization.png")
    has_waits = _waits(spans, sites, out_dir / "waits.png")
    rows = summarize(spans)
    used, heaviest = resource_use.read_use(journal)
    usage = ""
    if used:
        _usage(used, out_dir / "usage.png")
        usage = ("<h2>Resource use</h2>"
                 + _html_table(resource_use.SITE_COLUMNS, resource_use.site_rows(used))
                 + "<p><img src='usage.png' alt='usage.png'></p><h2>Longest attempts</h2>"
                 + _html_table(resource_use.ATTEMPT_COLUMNS, resource_use.attempt_rows(heaviest)))

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    table = _html_table(SUMMARY_COLUMNS, [
        (r.site, str(r.attempts), str(r.succeeded), str(r.failed), str(r.lost), str(r.moved),
         fmt(r.mean_wait_s), fmt(r.mean_predicted_wait_s), fmt(r.wait_error_s), fmt(r.mean_run_s))
        for r in rows])
    figures = ["gantt.png", "utilization.png"] + (["waits.png"] if has_waits else [])
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>metasched report: {html.escape(journal.name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        f"</head><body><h1>Campaign report</h1><p>journal: {html.escape(str(journal))}</p>{table}"
        + f"<p><img src='gantt.png' alt='gantt.png' data-attempt-bars='{drawn.bars}' "
          f"data-migration-arrows='{drawn.arrows}' data-block-bars='{drawn.block_bars}' "
          f"data-attempts-in-blocks='{drawn.in_blocks}'></p>"
        + "".join(f"<p><img src='{name}' alt='{name}'></p>" for name in figures[1:])
        + usage + "</body></html>"
    )
    index = out_dir / "index.html"
    index.write_text(page)
    return index
