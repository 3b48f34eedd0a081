"""One error hierarchy for everything a metasched user can see.

Every exception here survives a pickle round trip (Ray ships exceptions between processes): each class
stores its constructor arguments and rebuilds itself from them in ``__reduce__``. Messages are full
sentences that say what failed, where, and what to do. ``transient`` tells a caller whether retrying the
same operation may succeed.
"""

from __future__ import annotations

from typing import Any


class MetaschedError(Exception):
    """Base class of every metasched error."""

    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._state()))

    def _state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[MetaschedError], state: dict[str, Any]) -> MetaschedError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConfigurationError(MetaschedError):
    """A campaign, task or site was described in a way metasched cannot accept."""


class TaskError(MetaschedError):
    """A task did not produce a result. Subclasses say why.

    ``stdout`` and ``stderr`` are the ends of what the failed attempt printed (a command's output, a Python
    task's prints), where the site kept them; "" otherwise (and in errors journaled before they existed).
    """

    stdout: str = ""
    stderr: str = ""
    files: tuple[str, ...] = ()

    def __init__(self, message: str, *, task_id: str, task_name: str, stdout: str = "",
                 stderr: str = "", files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.task_name = task_name
        self.stdout = stdout
        self.stderr = stderr
        self.files = files

    def outputs(self) -> str:
        """The attempt's output tails, and where its whole output is, as sections ("" if none)."""
        said = "".join(f"\n\n--- {name} (the end of it):\n{text.rstrip()}"
                       for name, text in (("stdout", self.stdout), ("stderr", self.stderr)) if text.strip())
        return said + ("\n\n--- the whole output: " + ", ".join(self.files) if self.files else "")

    def __str__(self) -> str:
        return self.message + self.outputs()


class PlacementError(TaskError):
    """No site can ever run a task; the message names the requirement no site meets."""

    def __init__(self, message: str, *, task_id: str, task_name: str, requirement: str) -> None:
        super().__init__(message, task_id=task_id, task_name=task_name)
        self.requirement = requirement


class RemoteTaskError(TaskError):
    """The task's own code raised; carries the remote exception type, message and traceback."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        task_name: str,
        site: str,
        error_type: str,
        remote_traceback: str,
        stdout: str = "",
        stderr: str = "",
        files: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, task_id=task_id, task_name=task_name, stdout=stdout, stderr=stderr,
                         files=files)
        self.site = site
        self.error_type = error_type
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        if not self.remote_traceback.strip():
            return self.message + self.outputs()
        return (f"{self.message}\n\nRemote traceback (site {self.site}):\n{self.remote_traceback}"
                + self.outputs())


class WalltimeExceededError(TaskError):
    """The task ran longer than its walltime and was stopped."""


class TaskCancelledError(TaskError):
    """The task was cancelled before it finished."""


class DependencyError(TaskError):
    """A task the failed task depends on failed; names the root cause task."""

    def __init__(
        self, message: str, *, task_id: str, task_name: str, root_task_id: str, root_task_name: str
    ) -> None:
        super().__init__(message, task_id=task_id, task_name=task_name)
        self.root_task_id = root_task_id
        self.root_task_name = root_task_name


class AttemptLostError(TaskError):
    """The site lost the task (worker or node died, scheduler restarted) and no retries were left."""

    transient = True


class DataTransferError(TaskError):
    """A task's input could not be brought to the site it was placed at (names object, sites, cause)."""

    def __init__(self, message: str, *, task_id: str, task_name: str, object_id: str, source: str,
                 target: str) -> None:
        super().__init__(message, task_id=task_id, task_name=task_name)
        self.object_id = object_id
        self.source = source
        self.target = target


class JournalError(MetaschedError):
    """The campaign journal cannot be opened, read or written."""


class SiteAgentError(MetaschedError):
    """A site agent could not do what was asked (submit, poll, cancel)."""

    def __init__(self, message: str, *, site: str, transient: bool = False) -> None:
        super().__init__(message)
        self.site = site
        self.transient = transient


ALL_ERRORS: tuple[type[MetaschedError], ...] = (
    MetaschedError,
    ConfigurationError,
    PlacementError,
    TaskError,
    RemoteTaskError,
    WalltimeExceededError,
    TaskCancelledError,
    DependencyError,
    AttemptLostError,
    DataTransferError,
    JournalError,
    SiteAgentError,
)
