"""Every error reer-runtime raises for a user to read, and the exit code each one ends a command with.

    ReerError                     1  the command failed; the message says why
    ├── UsageError                2  the command cannot run as given: nothing was done
    │   ├── ConfigError           2  the configuration file or a REER_* / OTEL_* variable
    │   ├── InputError            2  an input file or folder that cannot be read as posts
    │   ├── ProviderConfigError   2  a provider URI, its options, or its start-up check
    │   └── DataDirLockedError    2  another daemon holds the data dir
    ├── ProviderError             1  a model call failed; `retryable` ones are retried by the Limiter
    │   ├── ProviderTimeout       1  no answer within limits.timeout_s (retried)
    │   ├── RateLimited           1  the provider said "too many requests" (retried after `retry_after`)
    │   ├── ServerFailed          1  the server or the local model failed (5xx, a lost connection: retried)
    │   ├── MalformedAnswer       1  an answer of the wrong shape (retried)
    │   ├── ProviderRefused       1  the provider declined the call as asked (4xx, cannot score): not retried
    │   └── CircuitOpen           1  too many failures in a row: the provider is skipped for a while
    ├── StoreError                1  a store cannot be read or written
    │   ├── CorruptRecordError    1  a complete line of a store is not its record
    │   └── StoreFullError        4  the disk or quota is full: the daemon stops, nothing is lost
    ├── NoPlanError               1  every initial plan copied the post: the post goes to failed.jsonl
    ├── Refused                   1  a handler declined a message for a reason the user can act on
    └── CrashLoopError            3  an actor failed too many times in a row: the daemon stops

The CLI catches `ReerError` once (`reer_runtime/cli/__init__.py`), prints `reer-runtime: MESSAGE` and exits with
the error's `exit_code`. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import ClassVar, TypeVar

E = TypeVar("E", bound=BaseException)


class ExitCode(IntEnum):
    """How a `reer-runtime` command ends."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CRASH_LOOP = 3
    DISK_FULL = 4
    INTERRUPTED = 130


class ReerError(Exception):
    """The root of the errors a user reads; `exit_code` is what the command exits with."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILURE


class UsageError(ReerError):
    """The command cannot run as given (flags, configuration, input, models): nothing was done."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration is invalid; the message says which setting and why."""


class InputError(UsageError):
    """An input file or folder cannot be read as posts; the message names it and says why."""


class ProviderConfigError(UsageError):
    """A provider URI is unknown, its options are wrong, or its start-up check failed."""


class DataDirLockedError(UsageError):
    """Another daemon holds the data dir."""


class ProviderError(ReerError):
    """A model call failed. `retryable` errors are retried by the Limiter, honouring `retry_after`.

    Each kind of failure is a subclass; its `kind` names it in the reply to the caller, in the span's
    and the metrics' `error.type`, and in the log line."""

    kind: ClassVar[str] = "error"
    retryable_by_default: ClassVar[bool] = False

    def __init__(self, message: str, *, retryable: bool | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = self.retryable_by_default if retryable is None else retryable
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """No answer within the provider's `timeout_s`."""

    kind = "timeout"
    retryable_by_default = True


class RateLimited(ProviderError):
    """The provider asked for fewer calls (HTTP 429); `retry_after` is its wait, if it said."""

    kind = "rate_limited"
    retryable_by_default = True


class ServerFailed(ProviderError):
    """The server or the local model failed: a 5xx, a lost connection, a model thread that stopped."""

    kind = "server_failed"
    retryable_by_default = True


class MalformedAnswer(ProviderError):
    """An answer that cannot be used: not JSON, no message, missing or impossible log-probabilities."""

    kind = "malformed"
    retryable_by_default = True


class ProviderRefused(ProviderError):
    """The provider declined the call as asked (a 4xx, a call it cannot make): asking again is no use."""

    kind = "refused"


class CircuitOpen(ProviderError):
    """The provider failed too often in a row and is skipped until its circuit resets."""

    kind = "circuit_open"


PROVIDER_ERRORS: dict[str, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        ProviderError,
        ProviderTimeout,
        RateLimited,
        ServerFailed,
        MalformedAnswer,
        ProviderRefused,
        CircuitOpen,
    )
}
"""Each kind of provider failure by its `kind`, to rebuild one carried as a value."""


class StoreError(ReerError):
    """A store cannot be read or written."""


class CorruptRecordError(StoreError):
    """A complete line of a store does not decode as its record type."""


class StoreFullError(StoreError):
    """A store could not be written because its disk or quota is full: the daemon stops."""

    exit_code = ExitCode.DISK_FULL

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(
            f"cannot write {path}: {error.strerror}. Free space on that disk (or point --data-dir or REER_HOME "
            "at a disk with room), then start again: everything accepted so far is kept, and the next start "
            "resumes it"
        )


class NoPlanError(ReerError):
    """Every initial plan the generator wrote copied the post."""


class Refused(ReerError):
    """A handler declined a message for a reason the user can act on: it is dead-lettered with
    the reason, logged as a warning without a traceback, and not counted as a failure."""


class CallCapReached(Refused):
    """A request made the model calls it may make (`writer.max_calls_per_request`)."""


class CrashLoopError(ReerError):
    """An actor's handler failed too many times in a row: the daemon stops rather than spin."""

    exit_code = ExitCode.CRASH_LOOP


def caused_by(exc: BaseException, kind: type[E]) -> E | None:
    """The error of type `kind` that `exc` is, or was raised from or while handling (as DSPy wraps
    its LM's errors), if any."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    return seen


def first_error(group: BaseExceptionGroup[ReerError]) -> ReerError:
    """The first error of a (possibly nested) exception group: the one to report."""
    error: ReerError | BaseExceptionGroup[ReerError] = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
