"""The decision log: the durable outcome of each two-phase transaction.

A row of the table ``dbrouter_decisions`` says that the global transaction
``PREFIX:GTRID`` (:func:`key`) was decided COMMIT -- written by the data
manager, on the coordinator in a transaction of its own, or inside a last
resource's transaction -- or ABORT, written by recovery before it rolls
branches back, so that a coordinator still running cannot then record
COMMIT (the key is the primary key).  The COMMIT row is the commit point.

:class:`DecisionLog` writes, reads and forgets the rows of one application
(its ``dbrouter.xid_prefix``): the data manager and ``recovery`` use it
alike.  A COMMIT row is forgotten once its branches are all committed: with
the next decision written on the same engine (one round trip saved per
transaction), or by recovery.
"""

import threading
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from . import checkpoints
from .branches import autocommit, driver_for
from .checkpoints import Checkpoint

COMMIT, ABORT = "commit", "abort"

table = Table(
    "dbrouter_decisions",
    MetaData(),
    Column("gtrid", String(64), primary_key=True),
    Column("decision", String(8), nullable=False),
    Column("branches", String(1000), nullable=False, default=""),
    Column("created", DateTime, nullable=False),
)


def key(prefix, gtrid):
    """The key of a global transaction's decision: ``PREFIX:GTRID``, the
    part its branches' ids ``PREFIX:GTRID:ENGINE`` share."""
    return f"{prefix}:{gtrid}"


def _now():
    return datetime.now(UTC).replace(tzinfo=None)


class DecisionLog:
    """The decisions of one application, whose transaction ids start with
    *prefix*: on its coordinator, and on the engines that were last resources.

    It remembers, per engine, whether the table was made in this process,
    and which COMMIT rows are to be deleted with the next decision there.
    """

    def __init__(self, prefix):
        self.prefix = prefix
        self._tables = set()
        self._finished = {}
        self._lock = threading.Lock()

    def key(self, gtrid):
        return key(self.prefix, gtrid)

    # -- the table -------------------------------------------------------------

    def ensure_table(self, name, engine):
        """Create the decision table on *engine* once per process.

        ``CREATE TABLE IF NOT EXISTS`` is not safe against itself on
        PostgreSQL (two creators collide in its catalogue): threads of this
        process wait for the first, and another process's table, created
        between our check and our CREATE, is success.
        """
        if name in self._tables:
            return
        with self._lock:
            if name in self._tables:
                return
            try:
                with engine.begin() as conn:
                    table.create(conn, checkfirst=True)
            except DBAPIError:
                with engine.connect() as conn:
                    if not inspect(conn).has_table(table.name):
                        raise
            self._tables.add(name)

    def _ensure_table_in(self, connection, name):
        """Create the decision table inside *connection*'s transaction (a
        last resource, whose DDL is transactional: SQLite)."""
        if name in self._tables:
            return
        with self._lock:
            table.create(connection, checkfirst=True)
            self._tables.add(name)

    # -- written by the data manager ---------------------------------------------

    def _row(self, gtrid, decision, branches):
        return {
            "gtrid": self.key(gtrid),
            "decision": decision,
            "branches": ",".join(branches),
            "created": _now(),
        }

    def write(self, name, engine, gtrid, branches, on_unknown_outcome):
        """Commit the decision COMMIT of *gtrid* (whose *branches* are
        prepared) in a transaction of its own on *engine*, the coordinator
        *name*.  If that commit fails with an unknown outcome (it may or
        may not have happened), ``on_unknown_outcome()`` is called before
        the error is raised."""
        finished = self._take_finished(name)
        row = self._row(gtrid, COMMIT, branches)
        try:
            self.ensure_table(name, engine)
            script = driver_for(engine).decision_script(table.name, row, finished)
            if script is not None:
                self._send_script(engine, script, gtrid, on_unknown_outcome)
                return
            with engine.connect() as conn:
                if finished:
                    conn.execute(delete(table).where(table.c.gtrid.in_(finished)))
                conn.execute(insert(table), row)
                checkpoints.reached(Checkpoint.BEFORE_DECISION_COMMITS, gtrid=gtrid)
                try:
                    conn.commit()
                except DBAPIError:
                    on_unknown_outcome()
                    raise
        except Exception:
            self.forget_later(name, finished)
            raise

    def _send_script(self, engine, script, gtrid, on_unknown_outcome):
        with autocommit(engine) as dbapi_connection:
            checkpoints.reached(Checkpoint.BEFORE_DECISION_COMMITS, gtrid=gtrid)
            try:
                driver_for(engine).run(dbapi_connection, script)
            except DBAPIError as exc:
                # a constraint error is a known outcome (recovery decided
                # ABORT first); anything else may or may not have committed
                if not isinstance(exc, IntegrityError):
                    on_unknown_outcome()
                raise

    def write_in(self, connection, name, gtrid, branches):
        """Write the decision COMMIT of *gtrid* inside *connection*'s
        transaction, that of the last resource *name*: its commit, by the
        caller, is the commit point."""
        finished = self._take_finished(name)
        self._ensure_table_in(connection, name)
        if finished:
            connection.execute(delete(table).where(table.c.gtrid.in_(finished)))
        connection.execute(insert(table), self._row(gtrid, COMMIT, branches))

    def _take_finished(self, name, limit=200):
        """Keys of finished transactions' decisions on *name*, to delete
        with the next decision written there."""
        with self._lock:
            keys = self._finished.get(name, [])
            taken, self._finished[name] = keys[:limit], keys[limit:]
        return taken

    def forget_later(self, name, keys):
        """Delete the decisions *keys* on engine *name* with the next
        decision written there (their branches are all committed)."""
        if keys:
            with self._lock:
                self._finished.setdefault(name, []).extend(keys)

    # -- read and written by recovery ------------------------------------------------

    def read(self, engines, gtrid):
        """The decision of *gtrid*, found on one of *engines*, or None."""
        for engine in engines:
            with engine.connect() as conn:
                if not inspect(conn).has_table(table.name):
                    continue
                found = conn.execute(
                    select(table.c.decision).where(table.c.gtrid == self.key(gtrid))
                ).scalar()
                if found is not None:
                    return found
        return None

    def record_abort(self, name, engine, gtrid):
        """Record ABORT for *gtrid* on the coordinator *engine*, unless a
        decision is there already; whether it was recorded."""
        self.ensure_table(name, engine)
        with engine.connect() as conn:
            try:
                conn.execute(insert(table), self._row(gtrid, ABORT, ()))
                conn.commit()
                return True
            except IntegrityError:
                conn.rollback()
                return False

    def forget(self, engines, gtrids):
        """Delete the COMMIT decisions of *gtrids*, whose branches are all
        finished.  ABORT rows stay: they are what stops a late coordinator
        from deciding COMMIT."""
        if not gtrids:
            return
        keys = [self.key(g) for g in gtrids]
        for engine in engines:
            with engine.begin() as conn:
                if inspect(conn).has_table(table.name):
                    conn.execute(
                        delete(table).where(
                            table.c.gtrid.in_(keys), table.c.decision != ABORT
                        )
                    )

    def forget_older(self, engines, cutoff, keep):
        """Delete this application's COMMIT decisions made before *cutoff*
        (a naive UTC datetime), but those of the transactions *keep*."""
        kept = [self.key(g) for g in keep]
        for engine in engines:
            with engine.begin() as conn:
                if not inspect(conn).has_table(table.name):
                    continue
                conn.execute(
                    delete(table).where(
                        table.c.decision == COMMIT,
                        table.c.created < cutoff,
                        table.c.gtrid.like(self.key("%")),
                        table.c.gtrid.not_in(kept),
                    )
                )
