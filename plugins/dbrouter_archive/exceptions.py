"""The errors of dbrouter_archive."""

from pyramid_dbrouter import DBRouterError


class ArchiveReadOnlyError(DBRouterError):
    """An object of the archive was to be written with
    ``dbrouter.archive.archive_writes = refuse``."""


class ArchiveMoveError(DBRouterError):
    """Rows cannot be moved as asked (a model that is not archived, objects
    that are not in the hot engine, a key shape the move does not handle)."""
