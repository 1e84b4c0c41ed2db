"""datastream: time-series streams identified by tags, downsampled automatically.

Public names only. The user guide starts at docs/index.md (the method by method guide is
docs/guide/api.md); docs/behaviour.md is the reference that docstrings cite as "behaviour §N".
"""

from . import exceptions
from ._version import __version__
from .api import Datastream
from .downsamplers import TIME_DOWNSAMPLERS, VALUE_DOWNSAMPLERS
from .engine.operator_specs import DERIVE_OPERATORS
from .granularity import Granularity
from .results import Datapoints, Streams
from .stream import Stream
from .tags import RESERVED_TAGS
from .values import VALUE_TYPES

__all__ = [
    "DERIVE_OPERATORS",
    "RESERVED_TAGS",
    "TIME_DOWNSAMPLERS",
    "VALUE_DOWNSAMPLERS",
    "VALUE_TYPES",
    "Datapoints",
    "Datastream",
    "Granularity",
    "Stream",
    "Streams",
    "__version__",
    "exceptions",
]
