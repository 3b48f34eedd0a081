"""Runs one attempt of a task wherever it lands: a Ray worker, or a batch job on a cluster.

The worker never raises for the task's own failures: it returns a ``TaskOutcome`` (``Succeeded`` with
the cloudpickled result, or ``Failed`` with a ``RemoteFailure``: type, message, traceback as text), so
the scheduler can record both without importing the task's libraries. Walltime is enforced here: a
command's process group is killed, a Python function is interrupted by SIGALRM (when it runs in the main
thread, as Ray tasks do) and reported as ``walltime_exceeded``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import cloudpickle

from metasched.attempt_dir import AttemptDir
from metasched.checkpoint.cooperative import Checkpoint, CheckpointStop
from metasched.data.objects import DataContext, DataRef, decode_ref, proxy_for
from metasched.data.serializers import dumps, loads, serializer_of
from metasched.data.stores import mark_here
from metasched.outcomes import (
    Checkpointed,
    CheckpointReason,
    Failed,
    Succeeded,
    TaskOutcome,
    command_outcome,
    failed,
    store_if_big,
    with_usage,
)
from metasched.records import (
    CheckpointKind,
    CommandSpec,
    RemoteFailure,
    TaskId,
    TaskKind,
    TaskRef,
    TaskSpec,
    replace_nested,
)
from metasched.worker.capture import Printed, captured
from metasched.worker.usage import MeasuredPopen, Meter, command_usage, resident_mb

_FUNCTION_CACHE: OrderedDict[str, Callable[..., Any]] = OrderedDict()
_FUNCTION_CACHE_SIZE = 256
_KILL_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1


class _WalltimeExceeded(BaseException):
    """Raised inside a Python task when its walltime runs out (BaseException: user code rarely catches it)."""


def load_function(digest: str, blob: bytes) -> Callable[..., Any]:
    """Unpickle a task function once per worker process."""
    fn = _FUNCTION_CACHE.get(digest)
    if fn is None:
        fn = cloudpickle.loads(blob)
        _FUNCTION_CACHE[digest] = fn
        if len(_FUNCTION_CACHE) > _FUNCTION_CACHE_SIZE:
            _FUNCTION_CACHE.popitem(last=False)
    else:
        _FUNCTION_CACHE.move_to_end(digest)
    return fn


def substitute(value: Any, results: Mapping[TaskId, Any], data: DataContext | None = None) -> Any:
    """Replace every TaskRef in value (inside lists, tuples and dicts too) by that task's result.

    Every stored argument (DataRef) becomes a proxy of its replica at this site.
    """
    value = replace_nested(value, TaskRef, lambda ref: results[ref.task_id])
    inputs = data.inputs if data is not None else {}
    return replace_nested(value, DataRef, lambda ref: proxy_for(inputs.get(ref.object_id, ref)))


def load_value(blob: bytes, data: DataContext | None = None) -> Any:
    """A dependency's result: the unpickled value, or a proxy of its replica at this site if stored."""
    ref = decode_ref(blob)
    if ref is None:
        return loads(blob)
    return proxy_for(data.inputs.get(ref.object_id, ref) if data is not None else ref)


@contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise _WalltimeExceeded()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _failure(exc: BaseException, *, printed: Printed | None = None) -> RemoteFailure:
    return RemoteFailure(
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        stdout=printed.stdout if printed is not None else "",
        stderr=printed.stderr if printed is not None else "",
    )


def run_function(spec: TaskSpec, function: bytes, dependency_results: Mapping[TaskId, bytes],
                 data: DataContext | None = None, checkpoint: Checkpoint | None = None) -> TaskOutcome:
    """Run a Python function task and return its outcome.

    A cooperative task gets `checkpoint` as its ``ckpt`` keyword; its walltime is then per attempt and
    left to the site (Slurm warns, the task saves and stops), not enforced here.
    """
    assert spec.function_digest is not None  # noqa: S101  (built by the API, never from outside input)
    printed = Printed()
    try:
        fn = load_function(spec.function_digest, function)
        results = {tid: load_value(blob, data) for tid, blob in dependency_results.items()}
        args, kwargs = loads(spec.payload)
        args, kwargs = substitute(args, results, data), substitute(kwargs, results, data)
        if spec.checkpoint is CheckpointKind.COOPERATIVE:
            if checkpoint is None:
                raise RuntimeError("this site cannot run cooperative checkpoints (no checkpoint handle)")
            kwargs["ckpt"] = checkpoint
        with captured(printed), _alarm(None if spec.checkpoint else spec.resources.walltime_s):
            value = fn(*args, **kwargs)
        return Succeeded(result=dumps(value, serializer_of(spec.payload)),  # as its arguments came
                         stdout=printed.stdout, stderr=printed.stderr)
    except CheckpointStop as stop:
        size = stop.ref.size / 1e6
        return Checkpointed(ref=stop.ref, reason=stop.reason,
                            detail=f"{stop.reason.value} checkpoint (cooperative): {size:.1f} MB of state")
    except _WalltimeExceeded:
        return failed("WalltimeExceeded", f"walltime of {spec.resources.walltime_s:g} s exceeded",
                      walltime_exceeded=True, stdout=printed.stdout, stderr=printed.stderr)
    except Exception as exc:  # the task's own failure: report it, never crash the worker
        return Failed(failure=_failure(exc, printed=printed))


def run_command(spec: TaskSpec) -> TaskOutcome:
    """Run a command task (argv list, no shell) in its own process group and return its outcome."""
    command: CommandSpec | None = spec.command
    if command is None:
        return failed("ConfigurationError", "command task without a command")
    env = {**os.environ, **dict(command.env)}
    start, forked_mb = time.monotonic(), resident_mb()
    try:
        proc = MeasuredPopen(
            list(command.argv), cwd=command.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, preexec_fn=die_with_parent,
        )
    except OSError as exc:
        return Failed(failure=_failure(exc))
    stopped = False
    try:
        stdout, stderr = proc.communicate(timeout=spec.resources.walltime_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stdout, stderr = proc.communicate()
        stopped = True
    outcome = command_outcome(spec, returncode=proc.returncode, stdout=stdout, stderr=stderr,
                              walltime_exceeded=stopped)
    return with_usage(outcome, command_usage(proc, time.monotonic() - start, forked_mb))


def die_with_parent() -> None:
    """In the child: get SIGKILL when the worker dies (e.g. force-cancelled), so commands never outlive it."""
    with contextlib.suppress(OSError):  # not Linux/glibc: the walltime group kill still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def guard_group(proc: subprocess.Popen[Any]) -> None:
    """Have `proc`'s process group (its own session) killed if this process dies first (``guard.py``).

    ``die_with_parent`` ends the child itself; the guard also ends what the child started. Returns once
    the guard holds both processes and has detached.
    """
    guard = os.path.join(os.path.dirname(__file__), "guard.py")
    subprocess.run([sys.executable, guard, str(proc.pid), str(os.getpid())], stdin=subprocess.DEVNULL,  # noqa: S603
                   start_new_session=True, check=False, timeout=60)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a child started in its own session: its whole group, TERM then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=_KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def run_packed(packed: bytes) -> bytes:
    """Run a pack of attempts one after the other (Ray task entry point of the local site).

    `packed` is ``pickle.dumps((functions_by_digest, [(attempt_id, spec, dependency_results, data, steering),
    ...]))`` (`steering`: a cooperative attempt's ``Steering``, else None); the answer is
    ``pickle.dumps([(attempt_id, outcome, run_seconds), ...])``. Plain bytes in and out keep Ray's per-task
    serialization cost low; packing several short attempts into one Ray task amortizes Ray's per-task
    overhead (see site_agents.local).
    """
    functions, items = pickle.loads(packed)
    out = []
    for attempt_id, spec, dependency_results, data, steering in items:
        start = time.perf_counter()
        function = functions.get(spec.function_digest) if spec.function_digest else None
        checkpoint = None if steering is None else steering.checkpoint(attempt_id, spec, data)
        outcome = run_attempt(spec, function, dependency_results, data, checkpoint)
        out.append((attempt_id, outcome, time.perf_counter() - start))
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


def run_attempt(spec: TaskSpec, function: bytes | None, dependency_results: Mapping[TaskId, bytes],
                data: DataContext | None = None, checkpoint: Checkpoint | None = None) -> TaskOutcome:
    """Entry point for any site: run one attempt of `spec`, measured; a big result goes to its store."""
    meter = Meter()
    if data is not None:
        mark_here(data.store)  # a worker runs at its site: the site's store is a directory here
    if spec.kind is TaskKind.COMMAND:
        outcome = run_command(spec)
    elif function is None:
        return failed("ConfigurationError", "function task without a function")
    else:
        outcome = run_function(spec, function, dependency_results, data, checkpoint)
    outcome = with_usage(outcome, meter.usage())  # a command's own (from wait4) stays
    try:
        return store_if_big(spec, outcome, data)
    except Exception as exc:  # the store is unreachable or full: say so, with the store's name
        where = data.store.store_id if data is not None else "?"
        failure = _failure(RuntimeError(f"storing the result in {where} failed: {exc}"))
        return Failed(failure=failure, usage=getattr(outcome, "usage", None))


def main(argv: list[str]) -> int:
    """``python -m metasched.worker DIR``: run the attempt stored in DIR and write its outcome there.

    SIGUSR1 (Slurm's ``--signal=B:USR1@lead`` before walltime) is recorded in DIR/walltime-warning.
    """
    if len(argv) != 1:
        print("usage: python -m metasched.worker ATTEMPT_DIR", file=sys.stderr)
        return 2
    attempt = AttemptDir(argv[0])
    inputs = attempt.read_inputs()
    spec = inputs.spec
    checkpoint = None
    if spec.checkpoint is CheckpointKind.COOPERATIVE:
        checkpoint = Checkpoint(attempt_id=attempt.attempt_id, data=inputs.data, attempt=attempt,
                                restore=inputs.restore)

    def _warned(signum: int, frame: object) -> None:
        attempt.note_walltime_warning(time.time())
        if checkpoint is not None and spec.resources.walltime_s is not None:
            checkpoint.stop_reason = checkpoint.stop_reason or CheckpointReason.WALLTIME

    def _stop(signum: int, frame: object) -> None:  # a migration: stop at the next save
        if checkpoint is not None:
            checkpoint.stop_reason = CheckpointReason.REQUESTED

    signal.signal(signal.SIGUSR1, _warned)
    signal.signal(signal.SIGUSR2, _stop)
    outcome = run_attempt(spec, inputs.function, inputs.dependency_results, inputs.data, checkpoint)
    attempt.write_outcome(outcome)
    return 0
