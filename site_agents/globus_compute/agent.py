"""The Globus Compute agent: attempts become calls of metasched's worker at an endpoint.

Submissions are queued and sent in batches of ``batch_size``, at most ``requests_per_s`` requests per
second. Each attempt's task id is its native id in the journal, so a resumed campaign re-attaches
instead of sending it again. Where the client chooses task ids (offline endpoints), a call is sent only
after a poll has reported its id - the scheduler journals a poll's updates before the next poll - so
no call is ever sent without its id on disk; the cloud chooses ids itself and reports them after the
batch is sent (a scheduler killed in between loses those calls' ids; they run once more).

A big argument or result never rides in the message: arguments over the campaign's data threshold are
already references and the worker puts big results in the site's store; a payload still over the
service's 10 MiB limit fails the attempt with the fix before anything is sent.
"""

from __future__ import annotations

import logging
import pickle
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from metasched.errors import SiteAgentError
from metasched.outcomes import Cancelled, LossReason, Lost, failed
from metasched.records import AttemptId, SiteLoad, SiteName
from metasched.sites.base import AttemptUpdate, Submission
from site_agents.globus_compute.config import PAYLOAD_LIMIT, GlobusComputeSite
from site_agents.globus_compute.service import (
    Call,
    CallResult,
    CloudService,
    ComputeService,
    EndpointLoad,
    OfflineService,
)

log = logging.getLogger(__name__)

_ENVELOPE = 64 * 1024  # room for the Task message around the payload
_SMOOTHING = 0.2
LOAD_REFRESH_S = 10.0  # the endpoint's report of its load is read at most this often (one request)


@dataclass(slots=True)
class _Attempt:
    attempt_id: AttemptId
    name: str
    sent_at: float = 0.0


@dataclass(slots=True)
class _Queued:
    call: Call
    announced: bool  # its native id was reported in an earlier poll (so it is journaled), or has none yet


def payload(sub: Submission) -> bytes:
    """``run_packed``'s argument for one attempt (see metasched.worker.run_packed)."""
    functions = {sub.spec.function_digest: sub.function} if sub.spec.function_digest and sub.function else {}
    items = [(sub.attempt_id, sub.spec, sub.dependency_results, sub.data, None)]
    return pickle.dumps((functions, items), protocol=pickle.HIGHEST_PROTOCOL)


def version_problem(details: dict[str, object], site: str) -> str | None:
    """Why the endpoint's Python or dill cannot run what this machine serializes, with the fix."""
    from globus_compute_sdk.sdk.utils import get_env_details

    here = get_env_details()
    theirs_py, ours_py = str(details.get("python_version", "?")), str(here["python_version"])
    theirs_dill, ours_dill = str(details.get("dill_version", "?")), str(here["dill_version"])
    problems = []
    if theirs_py.split(".")[:2] != ours_py.split(".")[:2]:
        problems.append(f"Python {theirs_py} there, {ours_py} here")
    if theirs_dill != ours_dill:
        problems.append(f"dill {theirs_dill} there, {ours_dill} here")
    if not problems:
        return None
    return (f"site {site}: the endpoint's environment does not match this machine's ({'; '.join(problems)}). "
            f"Functions pickled here may not load there: install Python {'.'.join(ours_py.split('.')[:2])} "
            f"and dill {ours_dill} (pip install "
            f"'globus-compute-sdk=={here['globus_compute_sdk_version']}') in "
            "the endpoint's environment, or run metasched from an environment that matches the endpoint.")


def endpoint_wait(reported: EndpointLoad | None, ours: int, cores: int,
                  run_s: float) -> tuple[float, int | None]:
    """(wait before a call of ours starts, workers open to ours then) given the endpoint's report.

    `ours`: our calls the endpoint held when it reported; `run_s`: how long a task holds a worker.
    """
    if reported is None:
        return 0.0, None
    workers = reported.workers or cores
    others = max(0, reported.outstanding - ours)
    if others < workers:
        return 0.0, workers - others
    return (others - workers + 1) * run_s / workers, workers


class GlobusComputeAgent:
    """Sends attempts to one endpoint through a ComputeService and turns results into outcomes."""

    def __init__(self, config: GlobusComputeSite, service: ComputeService | None = None) -> None:
        self.config = config
        self._service = service
        self._queue: deque[_Queued] = deque()
        self._attempts: dict[AttemptId, _Attempt] = {}
        self._pending: list[AttemptUpdate] = []
        self._requests: deque[float] = deque()
        self._last_poll = 0.0
        self._mean_run_s = 1.0
        self.available, self.unavailable_reason = True, ""
        self.endpoint_details: dict[str, object] = {}
        self._reported: EndpointLoad | None = None  # the endpoint's last report of its load
        self._ours_reported = 0  # our calls at the endpoint when it made that report
        self._load_read_at = -LOAD_REFRESH_S

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    # ------------------------------------------------------------------------------ start
    def start(self) -> None:
        """Connect to the endpoint and, unless turned off, check its Python and dill with a probe call."""
        if self._service is None:
            self._service = (OfflineService(self.config) if self.config.offline_endpoint is not None
                             else CloudService(self.config))
        self._service.start()
        if self.config.preflight_timeout_s > 0:
            self._preflight()
        self._read_load()  # before the first placement

    def _preflight(self) -> None:
        assert self._service is not None  # noqa: S101
        key = f"preflight-{uuid.uuid4().hex}"
        self._service.submit([Call(key=key, payload=pickle.dumps(({}, [])))])
        deadline = time.monotonic() + self.config.preflight_timeout_s
        while time.monotonic() < deadline:
            for result in self._service.results():
                if result.key != key:
                    continue
                self.endpoint_details = result.details
                if result.error:
                    raise SiteAgentError(
                        f"site {self.config.name}: the endpoint could not run metasched's probe task: "
                        f"{_first_line(result.error)}. The endpoint's Python environment needs metasched "
                        f"(and its dependencies) installed.\n{result.error}", site=self.config.name)
                problem = version_problem(result.details, self.config.name)
                if problem is not None:
                    raise SiteAgentError(problem, site=self.config.name)
                return
            time.sleep(0.1)
        self._service.forget([key])
        raise SiteAgentError(
            f"site {self.config.name}: the endpoint did not run the probe task in "
            f"{self.config.preflight_timeout_s:g} s (are its workers up? is its batch job queued?); raise "
            "preflight_timeout_s or set it to 0 to skip the check", site=self.config.name, transient=True)

    # ------------------------------------------------------------------------------ submit
    def submit(self, submissions: Sequence[Submission]) -> None:
        """Queue the attempts; they are sent in batches by poll()."""
        for sub in submissions:
            body = payload(sub)
            if len(body) + _ENVELOPE > PAYLOAD_LIMIT:
                self._pending.append(AttemptUpdate(attempt_id=sub.attempt_id, outcome=failed(
                    "PayloadTooLarge", f"task {sub.spec.name!r}: its arguments make a "
                    f"{len(body) / 1e6:.1f} MB "
                    f"message, over Globus Compute's {PAYLOAD_LIMIT / 2**20:.0f} MiB limit (site "
                    f"{self.config.name}); keep the campaign's data layer on (data_threshold) so big "
                    "arguments travel as references, or pass a ProxyStore proxy")))
                continue
            assert self._service is not None  # noqa: S101
            self._attempts[sub.attempt_id] = _Attempt(attempt_id=sub.attempt_id, name=sub.spec.name)
            native_id = self._service.reserve(sub.attempt_id)
            self._queue.append(_Queued(Call(key=sub.attempt_id, payload=body), announced=native_id is None))
            if native_id is not None:
                self._pending.append(AttemptUpdate(attempt_id=sub.attempt_id, native_id=native_id))

    def _send(self) -> list[AttemptUpdate]:
        """Send announced calls in batches, within the request rate."""
        assert self._service is not None  # noqa: S101
        updates: list[AttemptUpdate] = []
        now = time.monotonic()
        while self._requests and now - self._requests[0] > 1.0:
            self._requests.popleft()
        while len(self._requests) < max(1, int(self.config.requests_per_s)):
            # Announced calls are a prefix of the queue: a poll announces every call queued before it.
            batch: list[Call] = []
            while self._queue and self._queue[0].announced and len(batch) < self.config.batch_size:
                batch.append(self._queue.popleft().call)
            if not batch:
                break
            self._requests.append(now)
            try:
                self._service.submit(batch)
            except Exception as exc:  # the endpoint went away: these calls were not taken
                self._mark_unavailable(f"{type(exc).__name__}: {exc}")
                for call in batch:
                    self._attempts.pop(AttemptId(call.key), None)
                    updates.append(AttemptUpdate(attempt_id=AttemptId(call.key), outcome=Lost(
                        reason=LossReason.SITE_UNAVAILABLE, charge_retry=False,
                        detail=f"site {self.config.name}: the endpoint did not take the call ({exc})")))
                return updates
            for call in batch:
                self._attempts[AttemptId(call.key)].sent_at = now
                updates.append(AttemptUpdate(attempt_id=AttemptId(call.key), running=True))
        return updates

    # ------------------------------------------------------------------------------ poll
    def poll(self) -> list[AttemptUpdate]:
        """Send what is queued, then collect task ids and results (one request each)."""
        updates, self._pending = self._pending, []
        if self._service is None:
            return updates
        updates.extend(self._send())
        for queued in self._queue:
            queued.announced = True  # their ids are in `updates`: journaled before the next poll
        now = time.monotonic()
        if now - self._last_poll < self.config.poll_interval:
            return updates
        self._last_poll = now
        try:
            native = self._service.native_ids()
            results = self._service.results()
        except Exception as exc:
            self._mark_unavailable(f"{type(exc).__name__}: {exc}")
            return updates
        if not self.available:
            log.warning("site %s answers again", self.config.name)
        self.available, self.unavailable_reason = True, ""
        for key, native_id in native.items():
            if AttemptId(key) in self._attempts:
                updates.append(AttemptUpdate(attempt_id=AttemptId(key), native_id=native_id))
        for result in results:
            update = self._outcome(result)
            if update is not None:
                updates.append(update)
        if now - self._load_read_at >= LOAD_REFRESH_S:
            self._read_load()
        return updates

    def _read_load(self) -> None:
        """Ask the endpoint for its load: every client's tasks there, so others' work can be told apart."""
        assert self._service is not None  # noqa: S101
        self._load_read_at = time.monotonic()
        try:
            self._reported = self._service.load()
        except Exception as exc:  # no report is no knowledge, not an unavailable endpoint
            log.debug("site %s: no load report (%s: %s)", self.config.name, type(exc).__name__, exc)
            self._reported = None
        self._ours_reported = sum(1 for attempt in self._attempts.values() if attempt.sent_at)

    def _outcome(self, result: CallResult) -> AttemptUpdate | None:
        attempt = self._attempts.pop(AttemptId(result.key), None)
        if attempt is None:
            return None  # cancelled (already reported) or a probe
        if attempt.sent_at:
            self._mean_run_s += _SMOOTHING * (time.monotonic() - attempt.sent_at - self._mean_run_s)
        if result.value is not None:
            answers = pickle.loads(result.value)
            for attempt_id, outcome, _seconds in answers:
                if attempt_id == attempt.attempt_id:
                    return AttemptUpdate(attempt_id=attempt.attempt_id, outcome=outcome)
            error = "the endpoint's answer does not mention this attempt"
        else:
            error = result.error
        mismatch = version_problem(result.details, self.config.name) if result.details else None
        message = (f"task {attempt.name!r} failed at the Globus Compute endpoint of site {self.config.name}: "
                   f"{_first_line(error)}" + (f" ({mismatch})" if mismatch else ""))
        return AttemptUpdate(attempt_id=attempt.attempt_id,
                             outcome=failed("GlobusComputeError", message, traceback=error))

    def _mark_unavailable(self, reason: str) -> None:
        if self.available:
            log.warning("site %s unavailable: %s", self.config.name, reason)
        self.available, self.unavailable_reason = False, reason

    # ------------------------------------------------------------------------------ cancel, load, close
    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Withdraw queued calls; stop following sent ones (the service cannot stop a running function)."""
        wanted = {a for a in attempt_ids if a in self._attempts}
        if not wanted:
            return
        queued = {AttemptId(q.call.key) for q in self._queue}
        self._queue = deque(q for q in self._queue if AttemptId(q.call.key) not in wanted)
        sent = [a for a in wanted if a not in queued]
        if sent:
            log.warning("site %s: %d cancelled attempt(s) were already sent; the endpoint may still run "
                        "them to the end (Globus Compute cannot stop a running function)", self.config.name,
                        len(sent))
        if self._service is not None:
            self._service.forget(sent)
        for attempt_id in wanted:
            del self._attempts[attempt_id]
            detail = ("withdrawn before it was sent" if attempt_id in queued else
                      f"no longer followed; the endpoint of site {self.config.name} may still run it to "
                      "the end")
            self._pending.append(AttemptUpdate(attempt_id=attempt_id,
                                               outcome=Cancelled(detail=detail)))

    def reattach(self, attempt_id: AttemptId, spec: object, native_id: str) -> bool:
        """Follow a call an earlier scheduler sent (by its task id; without one it cannot be found)."""
        if not native_id or self._service is None or not self._service.reattach(attempt_id, native_id):
            return False
        self._attempts[attempt_id] = _Attempt(attempt_id=attempt_id, name=getattr(spec, "name", attempt_id),
                                              sent_at=time.monotonic())
        return True

    def load(self) -> SiteLoad:
        """Our calls in flight hold its cores for the recent run time, after other clients' tasks there.

        Other clients' tasks are what the endpoint last reported holding beyond ours (``LOAD_REFRESH_S``);
        each is taken to last as long as ours do. Fewer than its workers leave the rest open to us; more
        delay our next call until the surplus has started. Workers are the endpoint's live ones, or
        ``cores`` while it reports none (its blocks not started).
        """
        inflight = len(self._attempts)
        est_wait_s, open_cores = endpoint_wait(self._reported, self._ours_reported, self.config.cores,
                                               self._mean_run_s)
        return SiteLoad(
            site=self.name, total_cores=self.config.cores, max_cores_per_task=self.config.cores,
            max_memory_mb=self.config.memory_mb, gpus=self.config.gpus, nodes=1, inflight=inflight,
            max_inflight=self.config.max_inflight if self.available else inflight,
            est_wait_s=est_wait_s, open_cores=open_cores,
            cycle_s=self._mean_run_s, accepting=self.available, reports_start=True,
            problem="" if self.available else f"not answering: {self.unavailable_reason}")

    def close(self) -> None:
        """Stop following calls (sent ones finish at the endpoint, as with any Globus Compute client)."""
        if self._service is not None:
            self._service.forget(list(self._attempts))
            self._service.close()
        self._attempts.clear()
        self._queue.clear()


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"
