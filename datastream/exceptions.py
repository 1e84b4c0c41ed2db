"""Exceptions and warnings raised by datastream.

Every error derives from :class:`DatastreamException`; some also derive from a builtin
(``ValueError``/``TypeError``) so that generic callers can catch them the usual way.
"""

from __future__ import annotations

from collections.abc import Callable


class DatastreamException(Exception):
    """Base class of every datastream error."""


class StreamNotFound(DatastreamException):
    """The stream id is unknown or malformed."""


class MultipleStreamsReturned(DatastreamException):
    """A query that must identify one stream matched several."""


class InconsistentStreamConfiguration(DatastreamException):
    """ensure_stream was called with a configuration that differs from the stored one."""


class OutstandingDependenciesError(DatastreamException):
    """A stream that feeds a derived stream cannot be deleted on its own."""


class UnsupportedDownsampler(DatastreamException, ValueError):
    """An unknown downsampler name, or one that does not support the value type."""


class UnsupportedGranularity(DatastreamException, ValueError):
    """Not a granularity, nor the name or key of one."""


class UnsupportedDeriveOperator(DatastreamException, ValueError):
    """An unknown derive operator, or one that does not support the value type."""


class UnsupportedValueType(DatastreamException, TypeError):
    """An unknown value type."""


class ReservedTagNameError(DatastreamException, ValueError):
    """A tag key that is reserved (metadata names, `$`, `.`, `__`, NUL, empty)."""


class InvalidTimestamp(DatastreamException, ValueError):
    """A timestamp that is not a datetime, out of range, older than allowed, or inside a
    downsampled range."""


class IncompatibleGranularities(DatastreamException, ValueError):
    """A derive source whose granularity does not fit the operator or the source."""


class IncompatibleTypes(DatastreamException, TypeError):
    """A derive source whose value type the operator cannot use."""


class AppendToDerivedStreamNotAllowed(DatastreamException, ValueError):
    """Derived streams are computed from their sources; they take no appends."""


class InvalidOperatorArguments(DatastreamException, ValueError):
    """Derive sources or arguments that the operator cannot run with."""


class LockExpiredMidMaintenance(DatastreamException):
    """A maintenance lock (downsampling, backprocessing) expired before the work finished."""


class StreamAppendContended(DatastreamException):
    """Too many writers raced for the same stream; the append was not stored."""


class StreamAppendFailed(DatastreamException):
    """A backend failed while writing; nothing of that batch is stored."""


class CommitOutcomeUnknown(StreamAppendFailed):
    """A commit the backend may or may not have applied: its reply was lost and the server
    could not be asked again. ``settle()`` asks once more: True when the batch is stored,
    False when nothing of it is, None while that still cannot be known (an error asking counts
    as None); once known, the answer is kept (asking can itself decide it, e.g. by aborting).
    The engine keeps such a batch apart and settles it before retrying, so that no point is
    stored twice."""

    def __init__(self, message: str, ask: Callable[[], bool | None]) -> None:
        super().__init__(message)
        self._ask = ask
        self._known: bool | None = None

    def settle(self) -> bool | None:
        if self._known is None:
            try:
                self._known = self._ask()
            except Exception:  # noqa: BLE001 - the backend still cannot answer
                return None
        return self._known


class StorageUnavailable(DatastreamException):
    """The backend cannot be reached or has been closed.

    Raised by reads, stream-record operations and maintenance locks of every backend, so that
    callers can catch one class whatever the backend; a failing commit is a
    :class:`StreamAppendFailed` instead.
    """


class DatastreamWarning(RuntimeWarning):
    """Base class of every datastream warning."""


class InvalidValueWarning(DatastreamWarning):
    """A value that could not contribute (e.g. a zero time step in a derivative)."""


class InternalInconsistencyWarning(DatastreamWarning):
    """Stored state that disagrees with itself; the operation went on."""


class DownsampleConsistencyNotGuaranteed(DatastreamWarning):
    """Downsampled data may not reflect every raw datapoint."""
