"""Each album's archive: the engines ``archive:KEY``, and archiving pictures.

dbrouter_archive does the moving and the reading (``dbrouter.archive.hot =
tenant:*``, ``dbrouter.archive.archive = archive:*``): the hot engine of a
picture is its album's, ``tenant:KEY``, and its archive the engine of the
same key.  This module makes those archive engines -- ``archive.sqlite`` in
the album's folder, or a database ``demo_archive_KEY`` next to the album's
-- with the album's tables, so that an archived picture keeps its id and
its tags, and moves with the album's folder.
"""

import threading

from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from dbrouter_archive import archive_rows, get_archive
from dbrouter_tenant import engine_name, get_tenancy
from dbrouter_tenant.folders import SqliteFolders
from dbrouter_tenant.servers import Databases

from .models import AlbumBase, Pic

PREFIX = "archive"
FILENAME = "archive.sqlite"
#: postgres.ini: the database of album KEY's archive
NAME_PREFIX_SETTING = "demo.archive.name_prefix"


class AlbumArchives:
    """The core's engine factory of ``archive:KEY``: album KEY's archive,
    made with the album's tables the first time it is needed (the album
    must exist: the key is checked by the tenant plugin first)."""

    def __init__(self, registry):
        self.registry = registry
        self._mode = None
        self._lock = threading.Lock()

    def __repr__(self):
        return f"<album archives {PREFIX}:KEY>"

    def mode(self):
        if self._mode is None:
            albums = get_tenancy(self.registry).mode
            if isinstance(albums, SqliteFolders):
                self._mode = SqliteFolders(albums.root, FILENAME)
            else:
                settings = self.registry.settings or {}
                prefix = settings.get(NAME_PREFIX_SETTING, "demo_archive_")
                self._mode = Databases(albums.admin_url, prefix)
        return self._mode

    def __call__(self, key, settings):
        get_tenancy(self.registry).require(key)  # a valid key, an existing album
        self.create(key)
        return self.mode().engine(key)

    def keys(self, settings):
        return self.mode().keys()

    def create(self, key):
        """Album *key*'s archive, with the album's tables, if it is missing."""
        mode = self.mode()
        with self._lock:
            if mode.exists(key):
                return
            tables = AlbumBase.metadata.sorted_tables
            if isinstance(mode, Databases):
                mode.create(key, AlbumBase.metadata, tables)
                return
            # in the album's folder, which exists (SqliteFolders.create would
            # make the folder)
            engine = create_engine(mode.url(key, create=True), poolclass=NullPool)
            try:
                AlbumBase.metadata.create_all(engine, tables=tables)
            finally:
                engine.dispose()

    def remove(self, key):
        mode = self.mode()
        if isinstance(mode, Databases) and mode.exists(key):
            mode.remove(key)


def archive_of(album):
    """The engine of album *album*'s archive."""
    return f"{PREFIX}:{album}"


def archive_pics(session, album, ids):
    """Move the pictures *ids* of album *album* (the request's), their tag
    links with them, to the album's archive; return how many moved (the
    pictures no longer in the album are not found: a second submission
    moves nothing)."""
    if not ids:
        return 0
    statement = select(Pic).where(Pic.id.in_(sorted(set(ids))))
    return archive_rows(session, statement, hot=engine_name(album)).rows


def moves_atomically(session, album):
    """Whether the album and its archive commit a move together (two-phase
    commit), or in two steps (two SQLite files)."""
    hot = engine_name(album)
    engines = [session.engine(hot), session.engine(archive_of(album))]
    return get_archive(session).atomic(engines)


def album_pics(session, album):
    """The pictures still in the album, newest first."""
    return _newest_first(session.using_bind(engine_name(album)))


def archived_pics(session, album):
    """The album's archived pictures, newest first."""
    return _newest_first(session.using_bind(archive_of(album)))


def _newest_first(session):
    statement = select(Pic).order_by(Pic.taken.desc(), Pic.id.desc())
    return session.scalars(statement).all()
