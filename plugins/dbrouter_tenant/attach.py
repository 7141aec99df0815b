"""``dbrouter.tenant.attach``: the albums of one root written through one
SQLite connection, so that several albums commit atomically together.

SQLite cannot prepare a transaction, so the core refuses two album files
written in one transaction (``UnsafeCommitError``).  But SQLite commits
every file ATTACHed to one connection with one COMMIT, atomically, through
a *super-journal* (https://www.sqlite.org/atomiccommit.html, section 5),
when the files use a rollback journal (not WAL) and the main database is a
real file.  So in this mode:

* the *hub* is one engine on ``ROOT/.dbrouter-hub.sqlite`` (an empty main
  database, there for its super-journals), whose pool hands every checkout
  of a thread the connection that thread has already checked out
  (SQLAlchemy's ``SingletonThreadPool``): all the albums one session uses
  share one DBAPI connection, hence one transaction;
* the engine of tenant KEY is an ``execution_options()`` copy of the hub
  with ``schema_translate_map={None: "tenant_KEY"}`` (as the ``schema``
  mode does on PostgreSQL); its ``connect()`` ATTACHes ROOT/KEY/FILENAME as
  ``tenant_KEY`` on that connection if it is not yet (``mode=rw``: never a
  new file), refusing an album in WAL mode and more albums than SQLite's
  ``SQLITE_LIMIT_ATTACHED``;
* at the next checkout of the connection (a new session) every album is
  DETACHed, so that each session attaches the folders as they are then: an
  album moved away is not written through a file opened before the move;
* a second session using albums in a thread whose connection a session in
  progress holds would share its transaction (and commit its work): it is
  refused, and the connection closed, so that neither commits half of it
  (:func:`one_session_per_hub`).

The core counts the connections of one session that share a DBAPI
connection as one participant of the commit (``writes.participants``):
one COMMIT, no two-phase commit needed.
"""

import os
import sqlite3
import threading
import weakref
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import SingletonThreadPool

from pyramid_dbrouter import UnsafeCommitError

#: the hub's main database, in the root (not a valid key: never a tenant)
HUB_FILENAME = ".dbrouter-hub.sqlite"
#: the attached albums of a connection (its pool record's ``info``)
ATTACHED = "dbrouter.tenant.attached"
#: the session whose transaction holds a hub connection, and its album
#: Connections on it (the pool record's info)
OWNER = "dbrouter.tenant.session"
HOLDERS = "dbrouter.tenant.holders"
#: threads whose hub connection is kept (SingletonThreadPool closes the
#: connections of the oldest threads beyond this number)
HUB_THREADS = 256


class AttachLimitError(UnsafeCommitError):
    """A transaction used more albums than SQLite attaches to one connection."""


def schema_of(key):
    """The name album *key* is attached under (never ``main`` or ``temp``)."""
    return "tenant_" + key


class AlbumHub:
    """The connection that attaches the albums of one root, made on first use."""

    def __init__(self, folders, tables=()):
        self.folders = folders
        #: the names of the albums' tables, given decoys in the hub
        self.tables = tuple(tables)
        self.path = os.path.join(folders.root, HUB_FILENAME)
        self._engine = None
        self._lock = threading.Lock()

    def engine(self, key):
        """Tenant *key*'s engine: a copy of the hub naming its album."""
        return AttachedAlbumEngine(self, key)

    @property
    def hub(self):
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._make()
        return self._engine

    def _make(self):
        url = URL.create(
            "sqlite",
            database="file:" + quote(self.path),
            # uri=true: ATTACH then reads "file:" names too, and mode=rw
            query={"mode": "rwc", "uri": "true"},
        )
        engine = create_engine(
            url,
            poolclass=SingletonThreadPool,
            pool_size=HUB_THREADS,
            # the pool keeps each connection in its thread; disposing it
            # closes them from whichever thread disposes
            connect_args={"check_same_thread": False},
        )
        event.listen(engine, "connect", self._prepare_hub)
        event.listen(engine, "checkout", _detach_all)
        return engine

    def attach(self, connection, key):
        """ATTACH album *key* to *connection*'s DBAPI connection, if it is not."""
        schema = schema_of(key)
        attached = connection.connection.info.setdefault(ATTACHED, {})
        if schema in attached:
            return
        dbapi = connection.connection.dbapi_connection
        limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED)
        if len(attached) >= limit:
            raise AttachLimitError(
                f"album {key!r} is the {len(attached) + 1}th album of this "
                f"transaction, and SQLite attaches at most {limit} databases to "
                "one connection (SQLITE_LIMIT_ATTACHED, SQLITE_MAX_ATTACHED at "
                f"compile time); already attached: {', '.join(sorted(attached))}. "
                "Nothing was committed: write fewer albums per transaction"
            )
        path = self.folders.path(key)
        uri = "file:" + quote(path) + "?mode=rw"
        dbapi.execute("ATTACH DATABASE ? AS ?", (uri, schema))
        try:
            (mode,) = dbapi.execute(f'PRAGMA "{schema}".journal_mode').fetchone()
            if mode.lower() == "wal":
                raise UnsafeCommitError(
                    f"album {key!r} ({path}) is in WAL mode, where SQLite commits "
                    "each attached file on its own; dbrouter.tenant.attach needs "
                    "albums in a rollback-journal mode (PRAGMA journal_mode = "
                    "DELETE, with no connection open on the album)"
                )
            if not dbapi.in_transaction:
                # (SQLite's default for an attached file; it cannot be
                # changed inside a transaction, where ATTACH still can)
                dbapi.execute(f'PRAGMA "{schema}".synchronous = FULL')
        except BaseException:
            dbapi.execute("DETACH DATABASE ?", (schema,))
            raise
        attached[schema] = path

    def _prepare_hub(self, dbapi_connection, record):
        # the super-journal is written only for a main database in a rollback
        # journal mode with synchronous on (SQLite's defaults, made explicit)
        dbapi_connection.execute("PRAGMA main.journal_mode = DELETE")
        dbapi_connection.execute("PRAGMA main.synchronous = FULL")
        # SQLite looks an unqualified name up in main first, then in the
        # attached files in turn: textual SQL naming "photos" would read the
        # first album attached, whichever tenant it was meant for.  A view of
        # that name in main, over a table that does not exist, makes it an
        # error whose message says why.
        for name in self.tables:
            why = (
                f"{name} (dbrouter.tenant.attach: name an album's table through "
                "its Table or model, which the tenant's engine maps to its album; "
                "textual SQL is not mapped)"
            )
            dbapi_connection.execute(
                f"CREATE VIEW IF NOT EXISTS main.{_quote(name)} AS "
                f"SELECT * FROM {_quote(why)}"
            )

    def dispose(self):
        if self._engine is not None:
            self._engine.dispose()


def _quote(identifier):
    return '"' + identifier.replace('"', '""') + '"'


def _detach_all(dbapi_connection, record, proxy):
    # the first checkout of a thread's connection: a new session attaches
    # the albums it uses afresh (a folder moved meanwhile is not written)
    record.info.pop(OWNER, None)
    record.info.pop(HOLDERS, None)
    attached = record.info.pop(ATTACHED, None)
    try:
        for schema in attached or ():
            dbapi_connection.execute("DETACH DATABASE ?", (schema,))
    except sqlite3.Error as exc:
        # the pool throws this connection away and opens the hub again
        raise DisconnectionError(f"cannot detach an album: {exc}") from exc


def one_session_per_hub(session, transaction, connection):
    """``after_begin`` of every RoutingSession: refuse a second session on
    the hub connection of a thread while another session's transaction
    holds it (``with tenant_scope(...)`` inside a request that used albums).

    The connection is closed first: SQLite rolls back the work of both, and
    the first session's Connections are invalidated, so that it fails at its
    next statement or commit (SQLAlchemy's "invalid transaction") instead of
    committing what the second one wrote, or losing what it wrote itself.
    """
    if not isinstance(connection.engine, AttachedAlbumEngine):
        return
    info = connection.connection.info
    owner = info.get(OWNER)
    holder = owner() if owner is not None else None
    if holder is None or holder is session:
        info[OWNER] = weakref.ref(session)
        info.setdefault(HOLDERS, []).append(weakref.ref(connection))
        return
    for held in [ref() for ref in info.get(HOLDERS, ())]:
        if held is not None and not held.closed:
            held.invalidate()
    connection.invalidate()
    raise UnsafeCommitError(
        "dbrouter.tenant.attach: a second session used albums in this thread "
        "while another session's transaction was in progress on them; both "
        "share one SQLite connection, so neither can commit alone. Nothing was "
        "committed: use the first session, or run the second in another thread"
    )


class AttachedAlbumEngine(OptionEngine):
    """Tenant KEY in attach mode: the hub, with its album's tables mapped."""

    def __init__(self, hub, key):
        super().__init__(hub.hub, {"schema_translate_map": {None: schema_of(key)}})
        self._album_hub = hub
        self._album_key = key

    def connect(self):
        connection = super().connect()
        try:
            self._album_hub.attach(connection, self._album_key)
        except BaseException:
            connection.close()
            raise
        return connection

    def dispose(self, close=True):
        # the pool is the hub's, shared by every album of the root: when the
        # LRU evicts this album there is nothing of its own to close
        pass
