"""When a batch site would start a job of ours, from its whole queue (every user's jobs), as a pure function.

The site's status listing shows only our jobs; a cluster full of other users' work looks idle through it.
A dialect that can list the whole queue (``Dialect.queue_argv``) gives ``QueuedJob`` records; ``forecast``
replays them on the site's usable cores: running jobs free their cores when their time limit runs out,
pending ones start as cores free, in the order of the scheduler's own expected starts (no earlier than
those) where it gives them, then in the listed order. A job of ours queued behind all of them starts
when a core is free after the last of them has started. Time limits are upper bounds, so this errs
towards waiting longer; the agent corrects it by the waits it observes (``WaitLearner``), per resource
shape too, and where the controller answers for a shape (backfill, which may start a small job earlier,
and node fit are not modelled here) by its own expected start (``QueueWait``).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from metasched.records import Resources, SiteLoad

LEARNING_RATE = 0.2  # weight of the newest observation (wait error, run time)
AT_ONCE_S = 5.0  # a job that started within this long started at once (the scheduler's cycle, our poll)
UNLIMITED_S = 3600.0  # how long a job without a time limit is assumed to run


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedJob:
    """One job in the site's queue, as the whole-queue listing shows it."""

    job_id: str
    user: str
    running: bool
    cores: int
    remaining_s: float | None  # running: what is left of its time limit; pending: its limit (None: none)
    expected_start_s: float | None = None  # pending: the scheduler's own estimate, seconds from now


@dataclass(frozen=True, slots=True, kw_only=True)
class Forecast:
    """What other users' jobs mean for the next job of ours."""

    wait_s: float  # until a core is free for a job queued behind every other user's job
    open_cores: int  # cores free to our jobs then
    busy_cores: int  # other users' running jobs hold these now
    pending_cores: int  # ... and their pending jobs ask for these
    jobs: int  # other users' jobs listed
    unsettled: bool = False  # a pending job the scheduler has not placed yet (no expected start) fits now

    def describe(self) -> str:
        """E.g. "other users: 16 cores busy, 8 pending; ours start in ~95 s on 4 cores"."""
        return (f"other users: {self.busy_cores} cores busy, {self.pending_cores} pending in {self.jobs} "
                f"jobs; ours start in ~{self.wait_s:.0f} s on {self.open_cores} cores")


def forecast(jobs: Sequence[QueuedJob], *, usable_cores: int, ours: str, unlimited_s: float) -> Forecast:
    """Replay other users' jobs (not `ours`) on `usable_cores`; a job without a limit runs `unlimited_s`."""
    others = [j for j in jobs if j.user != ours]
    running = [j for j in others if j.running]
    pending = [j for j in others if not j.running and j.cores <= usable_cores]
    busy = sum(j.cores for j in running)
    ends = [(_limit(j, unlimited_s), j.cores) for j in running]
    heapq.heapify(ends)
    free, now, unsettled = usable_cores - busy, 0.0, False

    def free_up_to(cores: int) -> None:
        nonlocal free, now
        while free < cores and ends:
            end, released = heapq.heappop(ends)
            now, free = max(now, end), free + released

    for job in sorted(pending, key=lambda j: (j.expected_start_s is None, j.expected_start_s or 0.0)):
        now = max(now, job.expected_start_s or 0.0)
        free_up_to(job.cores)
        if free < job.cores:  # cannot fit even when everything else has ended: not our concern
            continue
        unsettled = unsettled or (now == 0.0 and job.expected_start_s is None)
        heapq.heappush(ends, (now + _limit(job, unlimited_s), job.cores))
        free -= job.cores
    free_up_to(1)
    while ends and ends[0][0] <= now:  # everything that ends at that moment frees its cores too
        free += heapq.heappop(ends)[1]
    return Forecast(wait_s=now, open_cores=max(1, free), busy_cores=busy,
                    pending_cores=sum(j.cores for j in pending), jobs=len(others), unsettled=unsettled)


def _limit(job: QueuedJob, unlimited_s: float) -> float:
    return job.remaining_s if job.remaining_s is not None else unlimited_s


@dataclass(slots=True)
class WaitLearner:
    """The error of predicted waits, learned from the waits jobs of ours actually had.

    ``bias_s`` is added to a forecast (an exponentially weighted mean of actual - forecast), so a forecast
    that waits for time limits other users' jobs never reach drifts towards what the site does. A wait
    under ``AT_ONCE_S`` counts as none: every batch site takes a moment to start a job, and a site the
    campaign has used must not look slower for it than one it has not. ``error_s`` is the recent mean
    absolute error of the corrected prediction, for reports.
    """

    bias_s: float = 0.0
    error_s: float = 0.0
    samples: int = 0

    def observe(self, forecast_s: float, actual_s: float) -> None:
        """A job of ours was forecast to wait `forecast_s` (no correction in it) and waited `actual_s`."""
        miss = (actual_s if actual_s > AT_ONCE_S else 0.0) - (forecast_s + self.bias_s)
        self.bias_s += LEARNING_RATE * miss
        self.error_s += LEARNING_RATE * (abs(miss) - self.error_s) if self.samples else abs(miss)
        self.samples += 1

    def corrected(self, forecast_s: float) -> float:
        """A forecast with the learned bias (never below zero)."""
        return max(0.0, forecast_s + self.bias_s)


SHAPE_SAMPLES = 3  # jobs of a shape that must have started before its own correction replaces the site's
PROBE_SHAPES = 4  # the most resource shapes whose start the controller is asked about (one command each)
RECHECK_S = 2.0  # a controller's answer the whole-queue forecast contradicts is asked again this much later


@dataclass(slots=True)
class QueueWait:
    """A batch site's predicted wait for our next job: the whole-queue forecast, corrected by observed waits.

    Without a whole-queue listing (``forecast`` None) the wait is what our own jobs waited (the learned
    bias alone). Per resource shape (``Resources``) two things refine it: the waits jobs of that shape
    had, once ``SHAPE_SAMPLES`` of them have started (their own correction: a 16-core job waits for a
    whole node where a 1-core one backfills), and the controller's expected start for a new job of that
    shape where the dialect can ask (Slurm: ``sbatch --test-only``), which a prediction is never below:
    it knows backfill, node fit and every job ahead, ours included; the forecast does not.
    """

    forecast: Forecast | None = None
    learner: WaitLearner = field(default_factory=WaitLearner)
    cycle_s: float = 0.0  # how long a job of ours holds its cores, start to end, recently
    shapes: dict[Resources, WaitLearner] = field(default_factory=dict)
    starts: dict[Resources, float] = field(default_factory=dict)  # the controller's, as time.monotonic()
    doubted: dict[Resources, float] = field(default_factory=dict)  # answers to confirm: when they were given

    def listed(self, jobs: Sequence[QueuedJob], *, usable_cores: int, ours: str) -> None:
        """A fresh whole-queue listing."""
        self.forecast = forecast(jobs, usable_cores=usable_cores, ours=ours, unlimited_s=UNLIMITED_S)

    def answered(self, starts: Mapping[Resources, float], *, at: float) -> None:
        """The controller's expected starts of these shapes, in seconds after `at` (``time.monotonic()``).

        An answer stands until the next one for its shape, and counts down meanwhile. While the listing
        shows other users' jobs the scheduler has not placed yet though they fit now (``unsettled``), an
        answer later than the forecast by more than ``AT_ONCE_S`` stands only once a second one,
        ``RECHECK_S`` later (``recheck_due``), says so too: a Slurm controller that has not yet scheduled
        jobs just submitted answers as if they ran first (seen: "to start" in 4 minutes at a site with 4
        cores idle, a second before it started them). The second answer stands, whatever it says; a shape
        it leaves unanswered is doubted no more. Otherwise (node fit, backfill) it stands at once.
        """
        unsettled = self.forecast is not None and self.forecast.unsettled
        for shape, start in starts.items():
            if unsettled and shape not in self.doubted and start > self.forecast_s + AT_ONCE_S:
                self.doubted[shape] = at
            else:
                self.doubted.pop(shape, None)
                self.starts[shape] = at + start
        for shape, asked in list(self.doubted.items()):
            if shape not in starts and at - asked >= RECHECK_S:
                del self.doubted[shape]

    def recheck_due(self, now: float) -> bool:
        """Whether an answer waits to be confirmed (``answered``) and it is time to ask again."""
        return any(now - asked >= RECHECK_S for asked in self.doubted.values())

    @property
    def forecast_s(self) -> float:
        """The whole-queue forecast alone (no correction)."""
        return self.forecast.wait_s if self.forecast is not None else 0.0

    @property
    def est_wait_s(self) -> float:
        """Before a core is free for us (``SiteLoad.est_wait_s``)."""
        return self.learner.corrected(self.forecast_s)

    def shape_waits(self) -> dict[Resources, float]:
        """``SiteLoad.shape_waits``: the shapes whose own correction replaces the site's."""
        return {shape: learner.corrected(self.forecast_s) for shape, learner in self.shapes.items()
                if learner.samples >= SHAPE_SAMPLES}

    def shape_starts(self, now: float) -> dict[Resources, float]:
        """``SiteLoad.shape_starts``: the controller's expected start of each shape asked, from `now`."""
        return {shape: max(0.0, start - now) for shape, start in self.starts.items()}

    @property
    def learned_s(self) -> float | None:
        """The correction our jobs' waits taught (in ``est_wait_s``); None before any job of ours started."""
        return self.learner.bias_s if self.learner.samples else None

    def open_cores(self, usable_cores: int) -> int:
        """Cores free to our jobs then (all usable ones without a forecast)."""
        return self.forecast.open_cores if self.forecast is not None else usable_cores

    def probe_shapes(self) -> list[Resources]:
        """The shapes to ask the controller about: the campaign's tasks' and our jobs', latest first."""
        return list(reversed(self.shapes))[:PROBE_SHAPES]

    def seen(self, shape: Resources) -> None:
        """A task or job of this shape (asked about from the next listing on, the latest first)."""
        learner = self.shapes.pop(shape, None)  # moved to the end: the most recent shape
        self.shapes[shape] = learner if learner is not None else WaitLearner()

    def submitted(self, load: SiteLoad, shape: Resources) -> tuple[float, float | None]:
        """A job of ours of `shape` was queued behind what `load` counts (which counts it too now).

        Returns its predicted wait, and the forecast the learners correct by its start (``started``): our
        turn behind ours there after the whole-queue forecast, or None while ours ahead have no known run
        time (the wait would be ours, not the site's).
        """
        predicted = load.wait_s(shape.cores, shape)
        turn = None if load.turn_unknown(shape.cores) else load.wait_s(shape.cores) - load.est_wait_s
        self.seen(shape)
        load.inflight += 1
        return predicted, None if turn is None else turn + self.forecast_s

    def started(self, forecast_s: float | None, waited_s: float, shape: Resources | None = None) -> None:
        """A job of ours started after `waited_s`; `forecast_s` was the uncorrected forecast then.

        None: there was none of the site's wait alone (the job queued behind ours of unknown run time);
        nothing is learned from it.
        """
        if forecast_s is None:
            return
        self.learner.observe(forecast_s, waited_s)
        if shape is not None:
            self.shapes.setdefault(shape, WaitLearner()).observe(forecast_s, waited_s)

    def ended(self, ran_s: float) -> None:
        """A job of ours ended after holding its cores `ran_s`."""
        self.cycle_s += LEARNING_RATE * (ran_s - self.cycle_s) if self.cycle_s else ran_s
