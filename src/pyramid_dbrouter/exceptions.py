"""The errors pyramid_dbrouter raises.

Each message says what was wrong, the offending value (passwords masked) and
what would have been right, so that the traceback alone is enough to fix it.
"""

from pyramid.exceptions import ConfigurationError

__all__ = [
    "ConfigurationError",
    "CrossDatabaseRelationError",
    "DBRouterError",
    "FanoutError",
    "RouterAnswerError",
    "UnknownBindError",
    "UnsafeCommitError",
]


class DBRouterError(Exception):
    """Base class of the errors raised while a session routes or commits."""


class UnknownBindError(DBRouterError, KeyError):
    """An engine name that is not configured, from ``using_bind`` or a router."""

    def __init__(self, name, known, source=None):
        self.name = name
        self.known = sorted(known)
        self.source = source
        super().__init__(name)

    def __str__(self):
        where = f" (from {self.source})" if self.source else ""
        known = ", ".join(repr(n) for n in self.known) or "none"
        return f"unknown engine {self.name!r}{where}; configured engines: {known}"


class RouterAnswerError(DBRouterError, TypeError):
    """A router method answered something that is not a name, a list or None."""


class CrossDatabaseRelationError(DBRouterError):
    """Two related objects live in different engines and no router allows it."""


class FanoutError(DBRouterError):
    """A read from several engines cannot be answered as one database would.

    Raised before any SQL for what cannot be merged exactly
    (``COUNT(DISTINCT ...)``, window functions, ``ORDER BY`` on expressions
    that are not selected...; ask for ``execution_options(fanout="concat")``
    to get each engine's rows in turn instead), and, through its subclasses
    in :mod:`pyramid_dbrouter.fanout`, when an engine is too slow or fails.
    """


class UnsafeCommitError(DBRouterError):
    """More engines wrote than can be committed atomically together."""
