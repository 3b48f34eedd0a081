"""Runs one attempt of a task wherever it lands: a Ray worker, or a batch job on a cluster.

The worker never raises for the task's own failures: it returns a ``TaskOutcome`` carrying either the
cloudpickled result or a ``RemoteFailure`` (type, message, traceback as text), so the scheduler can
record both without importing the task's libraries. Walltime is enforced here: a command's process
group is killed, a Python function is interrupted by SIGALRM (when it runs in the main thread, as Ray
tasks do) and reported as ``walltime_exceeded``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
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
from pathlib import Path
from typing import Any

import cloudpickle

from metasched.checkpoint.cooperative import Checkpoint, CheckpointStop
from metasched.data.objects import DataContext, DataRef, decode_ref, encode_ref, proxy_for, put_blob
from metasched.data.pickling import dumps
from metasched.records import (
    CommandResult,
    CommandSpec,
    RemoteFailure,
    TaskId,
    TaskKind,
    TaskOutcome,
    TaskRef,
    TaskSpec,
    replace_nested,
)

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


def substitute(value: Any, results: dict[str, Any], data: DataContext | None = None) -> Any:
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
        return cloudpickle.loads(blob)
    return proxy_for(data.inputs.get(ref.object_id, ref) if data is not None else ref)


def store_if_big(spec: TaskSpec, outcome: TaskOutcome, data: DataContext | None) -> TaskOutcome:
    """Put a result bigger than the threshold in the site's store; the outcome then carries its ref."""
    if data is None or outcome.result is None or len(outcome.result) <= data.threshold:
        return outcome
    ref = put_blob(data.store, outcome.result, object_id=spec.task_id)
    return dataclasses.replace(outcome, result=encode_ref(ref))


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


def _failure(exc: BaseException, *, walltime_exceeded: bool = False) -> RemoteFailure:
    return RemoteFailure(
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        walltime_exceeded=walltime_exceeded,
    )


def run_function(spec: TaskSpec, function: bytes, dependency_results: dict[str, bytes],
                 data: DataContext | None = None, checkpoint: Checkpoint | None = None) -> TaskOutcome:
    """Run a Python function task and return its outcome.

    A cooperative task gets `checkpoint` as its ``ckpt`` keyword; its walltime is then per attempt and
    left to the site (Slurm warns, the task saves and stops), not enforced here.
    """
    assert spec.function_digest is not None  # noqa: S101  (built by the API, never from outside input)
    try:
        fn = load_function(spec.function_digest, function)
        results = {tid: load_value(blob, data) for tid, blob in dependency_results.items()}
        args, kwargs = cloudpickle.loads(spec.payload)
        args, kwargs = substitute(args, results, data), substitute(kwargs, results, data)
        if spec.checkpoint == "cooperative":
            if checkpoint is None:
                raise RuntimeError("this site cannot run cooperative checkpoints (no checkpoint handle)")
            kwargs["ckpt"] = checkpoint
        with _alarm(None if spec.checkpoint else spec.resources.walltime_s):
            value = fn(*args, **kwargs)
        return TaskOutcome(result=dumps(value))
    except CheckpointStop as stop:
        size = stop.ref.size / 1e6
        return TaskOutcome(checkpoint=stop.ref, checkpoint_reason=stop.reason,
                           detail=f"{stop.reason} checkpoint (cooperative): {size:.1f} MB of state")
    except _WalltimeExceeded:
        message = f"walltime of {spec.resources.walltime_s:g} s exceeded"
        return TaskOutcome(failure=RemoteFailure(
            error_type="WalltimeExceeded", message=message, traceback="", walltime_exceeded=True,
        ))
    except Exception as exc:  # the task's own failure: report it, never crash the worker
        return TaskOutcome(failure=_failure(exc))


def run_command(spec: TaskSpec) -> TaskOutcome:
    """Run a command task (argv list, no shell) in its own process group and return its outcome."""
    command: CommandSpec | None = spec.command
    if command is None:
        return TaskOutcome(failure=RemoteFailure(
            error_type="ConfigurationError", message="command task without a command", traceback=""))
    env = {**os.environ, **dict(command.env)}
    try:
        proc = subprocess.Popen(
            list(command.argv), cwd=command.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        return TaskOutcome(failure=_failure(exc))
    try:
        stdout, stderr = proc.communicate(timeout=spec.resources.walltime_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        return command_outcome(spec, returncode=proc.returncode, stdout=stdout, stderr=stderr,
                               walltime_exceeded=True)
    return command_outcome(spec, returncode=proc.returncode, stdout=stdout, stderr=stderr)


def command_outcome(spec: TaskSpec, *, returncode: int, stdout: str, stderr: str,
                    walltime_exceeded: bool = False) -> TaskOutcome:
    """The outcome of a finished command, the same wherever it ran (here, or a batch job's script)."""
    command = spec.command
    argv = command.argv if command is not None else ()
    if walltime_exceeded:
        message = (f"walltime of {spec.resources.walltime_s:g} s exceeded; process group of "
                   f"{argv[0] if argv else '?'!r} killed")
        return TaskOutcome(failure=RemoteFailure(
            error_type="WalltimeExceeded", message=message, traceback=stderr[-4000:], walltime_exceeded=True))
    if (command is None or command.check) and returncode != 0:
        return TaskOutcome(failure=RemoteFailure(
            error_type="CommandFailed", message=f"command {list(argv)!r} exited with status {returncode}",
            traceback=stderr[-4000:]))
    result = CommandResult(argv=argv, returncode=returncode, stdout=stdout, stderr=stderr)
    return TaskOutcome(result=cloudpickle.dumps(result))


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the worker dies (e.g. force-cancelled), so commands never outlive it."""
    with contextlib.suppress(OSError):  # not Linux/glibc: the walltime group kill still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[str]) -> None:
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

    `packed` is ``pickle.dumps((functions_by_digest, [(attempt_id, spec, dependency_results, data), ...]))``;
    the answer is ``pickle.dumps([(attempt_id, outcome, run_seconds), ...])``. Plain bytes in and out
    keep Ray's per-task serialization cost low; packing several short attempts into one Ray task
    amortizes Ray's per-task overhead (see site_agents.local).
    """
    functions, items = pickle.loads(packed)
    out = []
    for attempt_id, spec, dependency_results, data in items:
        start = time.perf_counter()
        function = functions.get(spec.function_digest) if spec.function_digest else None
        outcome = run_attempt(spec, function, dependency_results, data)
        out.append((attempt_id, outcome, time.perf_counter() - start))
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


def run_attempt(spec: TaskSpec, function: bytes | None, dependency_results: dict[str, bytes],
                data: DataContext | None = None, checkpoint: Checkpoint | None = None) -> TaskOutcome:
    """Entry point for any site: run one attempt of `spec`; a big result goes to the site's store."""
    if spec.kind is TaskKind.COMMAND:
        outcome = run_command(spec)
    elif function is None:
        return TaskOutcome(failure=RemoteFailure(
            error_type="ConfigurationError", message="function task without a function", traceback=""))
    else:
        outcome = run_function(spec, function, dependency_results, data, checkpoint)
    try:
        return store_if_big(spec, outcome, data)
    except Exception as exc:  # the store is unreachable or full: say so, with the store's name
        where = data.store.store_id if data is not None else "?"
        return TaskOutcome(failure=_failure(RuntimeError(f"storing the result in {where} failed: {exc}")))


# ------------------------------------------------------------------ attempts in a shared directory
ATTEMPT_FILE = "attempt.pkl"
OUTCOME_FILE = "outcome.pkl"
WALLTIME_WARNING_FILE = "walltime-warning"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_attempt(directory: Path, spec: TaskSpec, function: bytes | None,
                  dependency_results: Mapping[TaskId, bytes], data: DataContext | None = None,
                  restore: DataRef | None = None) -> None:
    """Store an attempt where a batch job's worker will read it (`restore`: a cooperative task's state)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / ATTEMPT_FILE,
                      pickle.dumps((spec, function, dict(dependency_results), data, restore),
                                   protocol=pickle.HIGHEST_PROTOCOL))


def read_outcome(directory: Path) -> TaskOutcome | None:
    """The outcome a worker wrote, or None if there is none (yet)."""
    try:
        data = (directory / OUTCOME_FILE).read_bytes()
    except FileNotFoundError:
        return None
    outcome: TaskOutcome = pickle.loads(data)
    return outcome


def main(argv: list[str]) -> int:
    """``python -m metasched.worker DIR``: run the attempt stored in DIR and write its outcome there.

    SIGUSR1 (Slurm's ``--signal=B:USR1@lead`` before walltime) is recorded in DIR/walltime-warning.
    """
    if len(argv) != 1:
        print("usage: python -m metasched.worker ATTEMPT_DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])

    spec, function, dependency_results, data, restore = pickle.loads((directory / ATTEMPT_FILE).read_bytes())
    checkpoint = None
    if spec.checkpoint == "cooperative":
        checkpoint = Checkpoint(attempt_id=directory.name, data=data, directory=directory, restore=restore)

    def _warned(signum: int, frame: object) -> None:
        (directory / WALLTIME_WARNING_FILE).write_text(f"{time.time()}\n")
        if checkpoint is not None and spec.resources.walltime_s is not None:
            checkpoint.stop_reason = checkpoint.stop_reason or "walltime"

    def _stop(signum: int, frame: object) -> None:  # a migration: stop at the next save
        if checkpoint is not None:
            checkpoint.stop_reason = "requested"

    signal.signal(signal.SIGUSR1, _warned)
    signal.signal(signal.SIGUSR2, _stop)
    outcome = run_attempt(spec, function, dependency_results, data, checkpoint)
    _write_atomically(directory / OUTCOME_FILE, pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0
