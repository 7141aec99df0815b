"""How each database takes part in a two-phase commit: its *branch driver*.

A branch is one engine's part of a distributed transaction, named by a
transaction id ``PREFIX:GTRID:ENGINE``.  Each driver speaks its database's
SQL on the raw DBAPI connection, so that nothing in between (a driver's own
two-phase API, SQLAlchemy's random xids) changes what is sent.  Driver
quirks are kept here, as data and comments:

* PostgreSQL names the branch at ``PREPARE TRANSACTION``; a transaction that
  already failed is silently rolled back there (the command tag says
  ``ROLLBACK``), which is a no vote.  ``COMMIT PREPARED`` and ``ROLLBACK
  PREPARED`` cannot run inside a transaction block: they run in autocommit.
* MySQL and MariaDB need ``XA START`` before the connection's first
  statement, so their connections begin as branches.  ``XA COMMIT`` of a
  recovered branch fails with 1400 (XAER_OUTSIDE) unless the connection has
  no local transaction: recovery uses autocommit connections.  ``XA
  RECOVER`` lists every branch of the server, and PyMySQL returns its
  ``data`` column as bytes.
* SQLite cannot prepare: it can only be the last resource.

Every statement of the commit that differs between databases is here: the
branch's own, what recovery sends to finish a branch it found, and the
decision's one-round-trip script on PostgreSQL.  Nothing else in the package
asks which database an engine is.
"""

import re
import weakref
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError

#: characters of every part of a transaction id: safe inside a SQL literal;
#: engine names made by a factory (``tenant:acme.eu``) have ':' and '.'
XID_PART = re.compile(r"^[A-Za-z0-9_-]+$")
XID_ENGINE = re.compile(r"^[A-Za-z0-9_.:-]+$")


def make_xid(prefix, gtrid, engine):
    for part, pattern in ((prefix, XID_PART), (gtrid, XID_PART), (engine, XID_ENGINE)):
        if not pattern.match(part):
            raise ValueError(f"{part!r} cannot be part of a transaction id")
    return f"{prefix}:{gtrid}:{engine}"


def parse_xid(xid, prefix):
    """``(gtrid, engine)`` of one of this application's ids, else None."""
    head, _, rest = xid.partition(":")
    if head != prefix:
        return None
    gtrid, sep, engine = rest.partition(":")
    if not sep or not gtrid or not engine:
        return None
    return gtrid, engine


def _run(dbapi_connection, sql, dbapi_module):
    """Execute *sql*; DBAPI errors wrapped as SQLAlchemy's, so that
    pyramid_tm / zope.sqlalchemy can tell a retryable one."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        status = getattr(cursor, "statusmessage", None)
        rows = cursor.fetchall() if cursor.description else []
        return status, rows
    except dbapi_module.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi_module.Error) from exc
    finally:
        cursor.close()


class BranchDriver:
    """No two-phase support (SQLite and other databases)."""

    supports_twophase = False
    begins_as_branch = False
    #: the longest transaction id the database accepts
    max_xid_length = 0

    def __init__(self, dialect):
        # weakly: the cache below is keyed weakly by the dialect, and a strong
        # reference from its value would keep every dialect alive (with its
        # event listeners: about 8 KB per engine an engine factory ever made)
        self._dialect = weakref.ref(dialect)
        self.dbapi = dialect.loaded_dbapi

    @property
    def dialect(self):
        return self._dialect()

    def run(self, dbapi_connection, sql):
        return _run(dbapi_connection, sql, self.dbapi)

    def start(self, dbapi_connection, xid):
        """Begin the branch (before the connection's first statement)."""

    def end_unprepared(self, dbapi_connection, xid, commit):
        """One-phase commit, or rollback, of a branch that was not prepared."""
        if commit:
            dbapi_connection.commit()
        else:
            dbapi_connection.rollback()

    def database_key(self, url):
        return (url.drivername, url.host, url.port, url.database)

    def set_autocommit(self, dbapi_connection, on):
        dbapi_connection.autocommit = on

    def decision_script(self, table, row, forget):
        """The statements that write the decision *row* into *table* (and
        delete the rows whose keys are in *forget*) and commit it durably,
        as one script sent in one round trip; None: they are sent one by one
        through SQLAlchemy."""
        return None

    def commit_prepared(self, dbapi_connection, xid):
        """COMMIT the branch *xid* prepared on *dbapi_connection*."""
        self._finish(dbapi_connection, xid, commit=True)

    def rollback_prepared(self, dbapi_connection, xid):
        """ROLLBACK the branch *xid* prepared on *dbapi_connection*."""
        self._finish(dbapi_connection, xid, commit=False)

    def _finish(self, dbapi_connection, xid, commit):
        self.run(dbapi_connection, self._finish_sql(xid, commit))

    def finish_prepared(self, engine, xid, commit):
        """COMMIT (or ROLLBACK) the prepared branch *xid* from a new
        autocommit connection of *engine*: a branch left by another
        connection, or by a process that died."""
        with autocommit(engine) as dbapi_connection:
            self.run(dbapi_connection, self._finish_sql(xid, commit))


class PostgreSQLDriver(BranchDriver):
    supports_twophase = True
    max_xid_length = 199
    #: "prepared transaction with identifier ... does not exist"
    unknown_xid_codes = ("42704",)

    def prepare(self, dbapi_connection, xid):
        """True when the branch is prepared; False when PostgreSQL rolled it
        back instead (a transaction that had already failed)."""
        status, _ = self.run(dbapi_connection, f"PREPARE TRANSACTION '{xid}'")
        return status == "PREPARE TRANSACTION"

    def _autocommit(self, dbapi_connection, sql):
        # after PREPARE TRANSACTION the connection is idle: it may switch
        dbapi_connection.autocommit = True
        try:
            return self.run(dbapi_connection, sql)
        finally:
            dbapi_connection.autocommit = False

    def _finish_sql(self, xid, commit):
        return f"{'COMMIT' if commit else 'ROLLBACK'} PREPARED '{xid}'"

    def _finish(self, dbapi_connection, xid, commit):
        # not in a transaction block.  PostgreSQL flushes two-phase records
        # whatever synchronous_commit says: once a COMMIT PREPARED returns
        # the decision row may go
        self._autocommit(dbapi_connection, self._finish_sql(xid, commit))

    def decision_script(self, table, row, forget):
        """One round trip: the statements of one simple query run as one
        transaction; SET LOCAL makes its commit durable whatever the
        server's default (every value is one we made, safe as a literal)."""
        sql = "SET LOCAL synchronous_commit = on; "
        if forget:
            sql += (
                f"DELETE FROM {table} WHERE gtrid IN ("
                + ", ".join(f"'{key}'" for key in forget)
                + "); "
            )
        return sql + (
            f"INSERT INTO {table} (gtrid, decision, branches, created) "
            f"VALUES ('{row['gtrid']}', '{row['decision']}', "
            f"'{row['branches']}', now() AT TIME ZONE 'UTC')"
        )

    def recover(self, dbapi_connection):
        """``[(xid, prepared_at_or_None)]`` of this database's prepared
        branches (on a connection in autocommit)."""
        _, rows = self.run(
            dbapi_connection,
            "SELECT gid, prepared FROM pg_prepared_xacts "
            "WHERE database = current_database()",
        )
        return [(gid, prepared) for gid, prepared in rows]

    def check(self, dbapi_connection):
        """Why this server cannot take part in a two-phase commit, or None."""
        _, rows = self.run(dbapi_connection, "SHOW max_prepared_transactions")
        if int(rows[0][0]) < 1:
            return (
                "max_prepared_transactions = 0 on this PostgreSQL server; set it to "
                "at least the number of concurrent transactions"
            )
        return None

    def is_unknown_xid(self, exc):
        orig = getattr(exc, "orig", exc)
        return getattr(orig, "sqlstate", None) in self.unknown_xid_codes


class MySQLDriver(BranchDriver):
    supports_twophase = True
    begins_as_branch = True
    max_xid_length = 64
    #: 1397 XAER_NOTA: unknown XID.  1402 XA_RBROLLBACK: MariaDB lists a
    #: prepared branch that changed nothing (an UPDATE matching no row) after
    #: its client died, then answers this to XA COMMIT / ROLLBACK and drops it
    unknown_xid_codes = (1397, 1402)

    def start(self, dbapi_connection, xid):
        self.run(dbapi_connection, f"XA START '{xid}'")

    def end_unprepared(self, dbapi_connection, xid, commit):
        try:
            self.run(dbapi_connection, f"XA END '{xid}'")
        except DBAPIError:
            if commit:
                raise
        if commit:
            self.run(dbapi_connection, f"XA COMMIT '{xid}' ONE PHASE")
        else:
            self.run(dbapi_connection, self._finish_sql(xid, commit=False))

    def prepare(self, dbapi_connection, xid):
        self.run(dbapi_connection, f"XA END '{xid}'")
        self.run(dbapi_connection, f"XA PREPARE '{xid}'")
        return True

    def _finish_sql(self, xid, commit):
        return f"XA {'COMMIT' if commit else 'ROLLBACK'} '{xid}'"

    def recover(self, dbapi_connection):
        _, rows = self.run(dbapi_connection, "XA RECOVER")
        found = []
        for _format_id, gtrid_length, _bqual_length, data in rows:
            if isinstance(data, bytes):
                data = data.decode("utf-8", "replace")
            # the server does not say when a branch was prepared
            found.append((data[:gtrid_length], None))
        return found

    def check(self, dbapi_connection):
        version = self.dialect.server_version_info or ()
        if self.dialect.is_mariadb and version < (10, 5):
            return "MariaDB before 10.5 loses prepared XA branches when a client dies"
        if not self.dialect.is_mariadb and version < (5, 7, 7):
            return "MySQL before 5.7.7 loses prepared XA branches when a client dies"
        return None

    def is_unknown_xid(self, exc):
        orig = getattr(exc, "orig", exc)
        args = getattr(orig, "args", ())
        return bool(args) and args[0] in self.unknown_xid_codes

    def database_key(self, url):
        # XA RECOVER lists the branches of the whole server
        return (url.drivername, url.host, url.port)

    def set_autocommit(self, dbapi_connection, on):
        dbapi_connection.autocommit(on)


_DRIVERS = {
    "postgresql": PostgreSQLDriver,
    "mysql": MySQLDriver,
    "mariadb": MySQLDriver,
}


_CACHE = weakref.WeakKeyDictionary()


def begins_as_branch(dialect):
    """Whether *dialect*'s connections begin as branches (MySQL, MariaDB);
    asked at every transaction's begin, without making a driver."""
    return _DRIVERS.get(dialect.name, BranchDriver).begins_as_branch


def driver_for(engine):
    """The branch driver of *engine*'s database (one per dialect object)."""
    dialect = engine.dialect
    driver = _CACHE.get(dialect)
    if driver is None:
        driver = _CACHE[dialect] = _DRIVERS.get(dialect.name, BranchDriver)(dialect)
    return driver


@contextmanager
def autocommit(engine):
    """A DBAPI connection of *engine* in autocommit, for statements that may
    not run in a transaction block; discarded if anything fails, so that no
    connection goes back to the pool in autocommit."""
    driver = driver_for(engine)
    raw = engine.raw_connection()
    try:
        driver.set_autocommit(raw.dbapi_connection, True)
        yield raw.dbapi_connection
        driver.set_autocommit(raw.dbapi_connection, False)
    except BaseException:
        raw.invalidate()
        raise
    finally:
        raw.close()
