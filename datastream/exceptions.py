"""Exceptions and warnings raised by datastream.

Every error derives from :class:`DatastreamException`; some also derive from a builtin
(``ValueError``/``TypeError``) so that generic callers can catch them the usual way.
"""


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
    pass


class UnsupportedGranularity(DatastreamException, ValueError):
    pass


class UnsupportedDeriveOperator(DatastreamException, ValueError):
    pass


class UnsupportedValueType(DatastreamException, TypeError):
    pass


class ReservedTagNameError(DatastreamException, ValueError):
    pass


class InvalidTimestamp(DatastreamException, ValueError):
    pass


class IncompatibleGranularities(DatastreamException, ValueError):
    pass


class IncompatibleTypes(DatastreamException, TypeError):
    pass


class AppendToDerivedStreamNotAllowed(DatastreamException, ValueError):
    pass


class InvalidOperatorArguments(DatastreamException, ValueError):
    pass


class LockExpiredMidMaintenance(DatastreamException):
    """A maintenance lock (downsampling, backprocessing) expired before the work finished."""


class StreamAppendContended(DatastreamException):
    """Too many writers raced for the same stream; the append was not stored."""


class StreamAppendFailed(DatastreamException):
    """A backend failed while writing; nothing of that batch is stored."""


class DatastreamWarning(RuntimeWarning):
    """Base class of every datastream warning."""


class InvalidValueWarning(DatastreamWarning):
    pass


class InternalInconsistencyWarning(DatastreamWarning):
    pass


class DownsampleConsistencyNotGuaranteed(DatastreamWarning):
    pass
