"""dbrouter_archive: hot and archive databases read as one, for pyramid_dbrouter.

Two databases with the same tables: recent rows in *hot*, old ones in the
*archive*.  ``config.include("dbrouter_archive")`` (after
``pyramid_dbrouter``) adds the directive ``config.add_db_archive`` and
calls it with the ``dbrouter.archive.*`` settings::

    dbrouter.archive.hot = default
    dbrouter.archive.archive = archive
    dbrouter.archive.models = myapp.models:Order

With ``hot = tenant:*`` and ``archive = archive:*`` each key has its
archive: the hot engine is what the routers after this plugin's choose (the
request's tenant), its archive the engine of the same key.
``dbrouter.archive.references`` names models copied, not moved, with the
archived rows that refer to them.

New rows go to hot; ``get()`` looks in hot, then in the archive; queries
read both through the core's fan-out, merged (ordered, limited) as one
database would answer, a row found in both returned once (hot's).
:func:`archive_rows` and ``dbrouter archive`` move rows and their children
-- atomically by two-phase commit where the engines support it, else as an
idempotent copy then delete, safe to run again after a crash.

Reading two databases costs every query of an archived model two round
trips: when the application almost never reads old rows, reading the
archive only where it asks (``using_bind("archive")``) is simpler.
"""

from .archive import Archive, get_archive
from .directive import add_db_archive
from .exceptions import ArchiveMoveError, ArchiveReadOnlyError
from .move import Moved, archive_rows, move_keys
from .router import ArchiveRouter
from .settings import parse_archive_settings

__all__ = [
    "Archive",
    "ArchiveMoveError",
    "ArchiveReadOnlyError",
    "ArchiveRouter",
    "Moved",
    "add_db_archive",
    "archive_rows",
    "get_archive",
    "includeme",
    "move_keys",
]


def includeme(config):
    """Add ``config.add_db_archive``, and call it with the
    ``dbrouter.archive.*`` settings if they name an archive."""
    config.add_directive("add_db_archive", add_db_archive)
    options = parse_archive_settings(config.get_settings())
    if options is not None:
        config.add_db_archive(**options, _settings=True)
