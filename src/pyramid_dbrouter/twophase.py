"""The transaction's data manager: one-phase, or a recoverable two-phase commit.

:class:`RoutingDataManager` joins a :class:`RoutingSession` to the zope
transaction, as zope.sqlalchemy's ``SessionDataManager`` does (it is one,
with the commit replaced), and decides at vote time from what each engine
did in the transaction:

============================  ===============================================
engines that wrote            at commit
============================  ===============================================
none                          every engine rolled back; nothing prepared
one                           ordinary one-phase commit of that engine
two or more, all two-phase    prepare each (``PREFIX:GTRID:ENGINE``), write
                              the decision durably to the coordinator in its
                              own transaction, then commit each branch
one without two-phase         last resource: prepare the others, write the
(SQLite) plus others          decision inside that engine's transaction and
                              commit it, then commit the others
two or more without           :class:`UnsafeCommitError` before anything
                              commits; everything rolled back
============================  ===============================================

Engines that only read are rolled back, never prepared.  The decision row is
the commit point: before it, any failure rolls every branch back; after it,
nothing is ever rolled back -- a failed ``COMMIT PREPARED`` is retried, then
left to ``dbrouter recover`` and logged loudly, and the request succeeds.
If the decision's own commit fails with an unknown outcome the request
raises and the prepared branches are left to recovery.
"""

import logging
import secrets
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import UTC, datetime

import transaction as zope_transaction
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    delete,
    event,
    insert,
    inspect,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import sessionmaker
from transaction._transaction import Status as ZopeStatus
from zope.sqlalchemy.datamanager import (
    _SESSION_STATE,
    STATUS_ACTIVE,
    STATUS_CHANGED,
    STATUS_READONLY,
    SessionDataManager,
)

from .decision_point import DecisionPoint
from .exceptions import DBRouterError, UnsafeCommitError
from .writes import connections, wrote
from .xa import driver_for, make_xid

log = logging.getLogger(__name__)

COMMIT, ABORT = "commit", "abort"

#: what :meth:`RoutingDataManager.decide` does, as found at vote time: commit
#: the session's transaction; end its one branch that wrote (MySQL/MariaDB
#: connections begin as XA branches); record a two-phase decision
ONE_PHASE, ONE_BRANCH, TWO_PHASE = "one-phase", "one-branch", "two-phase"

decisions = Table(
    "dbrouter_decisions",
    MetaData(),
    Column("gtrid", String(64), primary_key=True),
    Column("decision", String(8), nullable=False),
    Column("branches", String(1000), nullable=False, default=""),
    Column("created", DateTime, nullable=False),
)

#: how often, and after how long, a failed COMMIT PREPARED is tried again
COMMIT_RETRIES = (0.05, 0.25, 1.0)


def checkpoint(name, engine=None):
    """A point of the commit sequence.  Does nothing: fault-injection tests
    replace it (in a subprocess they kill) to stop the process right there."""


class TransactionVotedNo(DBRouterError):
    """A branch could not be prepared: the whole transaction is rolled back."""


class TwoPhasePolicy:
    """The ``dbrouter.*`` transaction settings of one application."""

    def __init__(self, engines, mode="auto", coordinator="default", prefix="dbr"):
        self.engines = engines
        self.mode = mode
        self.coordinator = coordinator
        self.prefix = prefix
        self._checked = {}
        self._tables = set()
        self._finished = {}
        self._lock = threading.Lock()
        self._sides = weakref.WeakKeyDictionary()
        self._sides_lock = threading.Lock()

    def side(self, engine):
        """The coordinator *engine*'s database, with a pool of its own, for
        the decisions.

        The commit's own statements run while the transaction holds its
        connections: taken from the same pool, N threads each holding one
        connection and waiting for a second would exhaust it, and wait on
        each other until it times out.
        """
        side = self._sides.get(engine)
        if side is None:
            with self._sides_lock:
                side = self._sides.get(engine)
                if side is None:
                    side = self._sides[engine] = _same_database(engine)
        return side

    def take_finished(self, engine_name, limit=200):
        """Decisions of finished transactions, to delete with the next one."""
        with self._lock:
            keys = self._finished.get(engine_name, [])
            taken, self._finished[engine_name] = keys[:limit], keys[limit:]
        return taken

    def add_finished(self, engine_name, keys):
        if keys:
            with self._lock:
                self._finished.setdefault(engine_name, []).extend(keys)

    def new_gtrid(self):
        return secrets.token_hex(8)

    def check(self, name, engine):
        """Refuse, before anything is prepared, an engine that cannot keep a
        prepared branch (checked once per engine)."""
        if name not in self._checked:
            driver = driver_for(engine)
            with outside_the_pool(engine) as other, autocommit(other) as dbapi:
                problem = driver.check(dbapi)
            xid = make_xid(self.prefix, "0" * 16, name)
            if problem is None and len(xid) > driver.max_xid_length:
                problem = (
                    f"the transaction id {xid!r} is longer than the "
                    f"{driver.max_xid_length} bytes this database accepts: shorten "
                    "dbrouter.xid_prefix or the engine name"
                )
            self._checked[name] = problem
        problem = self._checked[name]
        if problem is not None:
            raise UnsafeCommitError(
                f"engine {name!r} cannot take part in a two-phase commit: {problem}; "
                "nothing was committed"
            )

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
                    decisions.create(conn, checkfirst=True)
            except DBAPIError:
                with engine.connect() as conn:
                    if not inspect(conn).has_table(decisions.name):
                        raise
            self._tables.add(name)

    def ensure_table_in(self, connection, name):
        """Create the decision table inside *connection*'s transaction (a
        last resource, whose DDL is transactional: SQLite)."""
        if name in self._tables:
            return
        with self._lock:
            decisions.create(connection, checkfirst=True)
            self._tables.add(name)


# -- which connection is which branch -----------------------------------------

_GTRIDS = weakref.WeakKeyDictionary()


def current_gtrid(session):
    """The global transaction id of *session*'s current transaction."""
    root = session.get_transaction()
    gtrid = _GTRIDS.get(root)
    if gtrid is None:
        gtrid = _GTRIDS[root] = session._dbr_policy.new_gtrid()
    return gtrid


def start_branch(session, session_transaction, connection):
    """``after_begin``: MySQL and MariaDB connections begin as branches, as
    ``XA START`` must precede the connection's first statement."""
    if session_transaction.nested:
        return
    connection.info.pop(XID, None)
    policy = session._dbr_policy
    if policy is None or policy.mode != "auto":
        return
    driver = driver_for(connection.engine)
    if driver.begins_as_branch:
        name = session.engines.name_of(connection.engine)
        xid = make_xid(policy.prefix, current_gtrid(session), name)
        driver.start(connection.connection.dbapi_connection, xid)
        connection.info[XID] = xid


XID = "dbrouter.xid"


class Branch:
    """One engine's connection in the transaction being committed."""

    __slots__ = ("name", "engine", "connection", "driver", "wrote", "xid")

    def __init__(self, name, connection):
        self.name = name
        self.connection = connection
        self.engine = connection.engine
        self.driver = driver_for(connection.engine)
        self.wrote = wrote(connection)
        self.xid = connection.info.get(XID)

    @property
    def dbapi(self):
        return self.connection.connection.dbapi_connection

    def end(self, commit):
        """One-phase commit, or rollback, of a branch that was not prepared."""
        self.driver.end_unprepared(self.dbapi, self.xid, commit)
        self.connection.info.pop(XID, None)


# -- the data manager --------------------------------------------------------------


class RoutingDataManager(SessionDataManager):
    """zope.sqlalchemy's data manager, committing as the table above says."""

    def __init__(self, session, status, transaction_manager, keep_session=False):
        super().__init__(
            session, status, transaction_manager, keep_session=keep_session
        )
        self.policy = session._dbr_policy
        self.prepared = []
        self.decided = None
        self.outcome_unknown = False
        self.gtrid = None
        self.decision_engine = None
        self.last_resource = None
        self.plan = None
        DecisionPoint.join(transaction_manager, self)

    def _branches(self):
        """The transaction's connections as branches, in the order of names."""
        return [Branch(name, conn) for name, conn in connections(self.session, self.tx)]

    def tpc_vote(self, trans):
        """Vote: prepare every engine that wrote, when two or more did.

        Nothing is committed here: the one-phase commit, or the decision of
        a two-phase one, is taken by :meth:`decide` once every participant
        of the zope transaction has voted (see :mod:`.decision_point`).
        """
        self.plan = None
        if self.tx is None:
            return
        branches = self._branches()
        writers = [b for b in branches if b.wrote]
        if len(writers) < 2 and not any(b.xid for b in branches):
            self.plan = ONE_PHASE
        elif len(writers) < 2:
            for branch in branches:
                if not branch.wrote:
                    branch.end(commit=False)
            self.plan = ONE_BRANCH
        else:
            self._prepare(writers, [b for b in branches if not b.wrote])
            self.plan = TWO_PHASE

    def decide(self, trans):
        """The commit point, reached once every participant voted yes."""
        plan, self.plan = self.plan, None
        if self.tx is None or plan is None:
            return
        if plan == ONE_PHASE:
            self.tx.commit()
            self._finish("committed")
        elif plan == ONE_BRANCH:
            for branch in self._branches():
                if branch.wrote:
                    branch.end(commit=True)
            self._finish("committed")
        else:
            self._record_decision()

    def _prepare(self, writers, readers):
        policy = self.policy
        names = ", ".join(repr(b.name) for b in writers)
        if policy is None or policy.mode == "off":
            raise UnsafeCommitError(
                f"engines {names} wrote in one transaction and dbrouter.twophase "
                "= off; nothing was committed"
            )
        last = [b for b in writers if not b.driver.supports_twophase]
        if len(last) > 1:
            raise UnsafeCommitError(
                f"engines {names} all wrote in one transaction, and "
                f"{', '.join(repr(b.name) for b in last)} cannot take part in a "
                "two-phase commit (at most one such engine may write, committed "
                "last); nothing was committed"
            )
        resources = [b for b in writers if b.driver.supports_twophase]
        for branch in resources:
            policy.check(branch.name, branch.engine)
        self.gtrid = current_gtrid(self.session)
        for branch in readers:
            branch.end(commit=False)
        for branch in resources:
            checkpoint("before-prepare", branch.name)
            xid = branch.xid or make_xid(policy.prefix, self.gtrid, branch.name)
            if not branch.driver.prepare(branch.dbapi, xid):
                raise TransactionVotedNo(
                    f"engine {branch.name!r} rolled its transaction back at PREPARE "
                    "(a statement had failed in it); nothing was committed"
                )
            self.prepared.append((branch, xid))
            branch.connection.info.pop(XID, None)  # no longer to be ended
            checkpoint("prepared", branch.name)
        self.last_resource = last[0] if last else None

    def _record_decision(self):
        policy = self.policy
        last = self.last_resource
        record = {
            "gtrid": f"{policy.prefix}:{self.gtrid}",
            "decision": COMMIT,
            "branches": ",".join(b.name for b, _ in self.prepared),
            "created": datetime.now(UTC).replace(tzinfo=None),
        }
        if last is not None:
            self.decision_engine = last.name
            self._decide_in_last_resource(last, record)
        else:
            self.decision_engine = policy.coordinator
            self._decide_on_coordinator(record)
        self.decided = COMMIT
        checkpoint("decided")
        self.state = "voted"

    def _decide_on_coordinator(self, record):
        policy = self.policy
        name = policy.coordinator
        engine = policy.side(self.session.engines.get(name, "dbrouter.coordinator"))
        finished = policy.take_finished(name)
        try:
            if engine.dialect.name == "postgresql":
                self._decide_on_postgresql(engine, record, finished)
                return
            policy.ensure_table(name, engine)
            with engine.connect() as conn:
                if finished:
                    conn.execute(
                        delete(decisions).where(decisions.c.gtrid.in_(finished))
                    )
                conn.execute(insert(decisions), record)
                checkpoint("decision-inserted")
                try:
                    conn.commit()
                except DBAPIError:
                    self.outcome_unknown = True
                    raise
        except Exception:
            policy.add_finished(name, finished)
            raise

    def _decide_on_postgresql(self, engine, record, finished):
        """One round trip: the statements of one simple query run as one
        transaction; SET LOCAL makes its commit durable whatever the
        server's default (every value is one we made, safe as a literal)."""
        policy = self.policy
        policy.ensure_table(policy.coordinator, engine)
        sql = "SET LOCAL synchronous_commit = on; "
        if finished:
            sql += (
                "DELETE FROM dbrouter_decisions WHERE gtrid IN ("
                + ", ".join(f"'{key}'" for key in finished)
                + "); "
            )
        sql += (
            "INSERT INTO dbrouter_decisions (gtrid, decision, branches, created) "
            f"VALUES ('{record['gtrid']}', '{record['decision']}', "
            f"'{record['branches']}', now() AT TIME ZONE 'UTC')"
        )
        driver = driver_for(engine)
        with autocommit(engine) as dbapi_connection:
            checkpoint("decision-inserted")
            try:
                driver.run(dbapi_connection, sql)
            except DBAPIError as exc:
                # a constraint error is a known outcome (recovery decided
                # ABORT first); anything else may or may not have committed
                if not isinstance(exc, IntegrityError):
                    self.outcome_unknown = True
                raise

    def _decide_in_last_resource(self, branch, record):
        checkpoint("before-last-resource", branch.name)
        finished = self.policy.take_finished(branch.name)
        self.policy.ensure_table_in(branch.connection, branch.name)
        if finished:
            branch.connection.execute(
                delete(decisions).where(decisions.c.gtrid.in_(finished))
            )
        branch.connection.execute(insert(decisions), record)
        try:
            branch.dbapi.commit()
        except Exception:
            self.outcome_unknown = True
            raise
        checkpoint("last-resource-committed", branch.name)

    def tpc_finish(self, trans):
        if self.decided != COMMIT:
            return super().tpc_finish(trans)
        left = [b.name for b, xid in self.prepared if not self._commit_branch(b, xid)]
        if left:
            log.critical(
                "transaction %s:%s was decided COMMIT but engines %s could not be "
                "committed yet; run `dbrouter recover` to finish it",
                self.policy.prefix,
                self.gtrid,
                ", ".join(left),
            )
        else:
            self._forget_decision()
        self._finish("committed")

    def _commit_branch(self, branch, xid):
        checkpoint("before-commit-prepared", branch.name)
        try:
            branch.driver.commit_prepared(branch.dbapi, xid)
            checkpoint("committed", branch.name)
            return True
        except Exception as exc:
            log.error("COMMIT of prepared branch %s failed: %s", xid, exc)
            branch.connection.invalidate()
        for delay in COMMIT_RETRIES:
            time.sleep(delay)
            try:
                with outside_the_pool(branch.engine) as other:
                    _finish_recovered(other, branch.driver, xid, COMMIT)
                return True
            except DBAPIError as exc:
                if branch.driver.is_unknown_xid(exc):
                    # committed meanwhile: by the failed attempt, or recovery
                    return True
                log.error("retrying COMMIT of prepared branch %s failed: %s", xid, exc)
            except Exception as exc:
                log.error("retrying COMMIT of prepared branch %s failed: %s", xid, exc)
        return False

    def _forget_decision(self):
        # removed with the next decision written there (one round trip
        # saved per transaction), or by recovery
        key = f"{self.policy.prefix}:{self.gtrid}"
        self.policy.add_finished(self.decision_engine, [key])

    # -- aborting -------------------------------------------------------------

    def _roll_back_prepared(self):
        if self.decided == COMMIT:
            log.critical("refusing to roll back a transaction decided COMMIT")
            return
        if self.outcome_unknown:
            log.critical(
                "the decision of transaction %s:%s has an unknown outcome; its "
                "prepared branches %s are left to `dbrouter recover`",
                self.policy.prefix,
                self.gtrid,
                ", ".join(xid for _, xid in self.prepared),
            )
            return
        prepared, self.prepared = self.prepared, []
        for branch, xid in prepared:
            try:
                branch.driver.rollback_prepared(branch.dbapi, xid)
            except Exception as exc:
                log.error(
                    "ROLLBACK of prepared branch %s failed (left to recovery): %s",
                    xid,
                    exc,
                )
                branch.connection.invalidate()

    def abort(self, trans):
        self._roll_back_prepared()
        super().abort(trans)

    def tpc_abort(self, trans):
        self._roll_back_prepared()
        if self.tx is not None:
            self._finish("aborted commit")

    def _finish(self, final_state):
        if self.tx is not None:
            for branch in self._branches():
                if branch.xid and not any(b is branch for b, _ in self.prepared):
                    try:
                        branch.end(commit=False)
                    except Exception:  # the connection is discarded below anyway
                        branch.connection.invalidate()
            if self.keep_session and self.tx.is_active:
                # a kept session must not go on in this transaction, whose
                # branches were committed or rolled back beneath it
                self.tx.rollback()
        super()._finish(final_state)

    def sortKey(self):
        return f"~sqlalchemy:{id(self.tx)}"


def _same_database(engine):
    # recreate(): a pool of the same class, settings and connect events
    return Engine(engine.pool.recreate(), engine.dialect, engine.url)


@contextmanager
def outside_the_pool(engine):
    """*engine*'s database through a pool of its own, closed afterwards: for
    the rare statements of a commit on engines that may come and go (an
    engine's first check, a retried COMMIT PREPARED)."""
    other = _same_database(engine)
    try:
        yield other
    finally:
        other.dispose()


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


def _finish_recovered(engine, driver, xid, decision):
    """COMMIT or ROLLBACK PREPARED *xid* from a new autocommit connection."""
    verb = "COMMIT" if decision == COMMIT else "ROLLBACK"
    with autocommit(engine) as dbapi_connection:
        if driver.begins_as_branch:
            driver.run(dbapi_connection, f"XA {verb} '{xid}'")
        else:
            driver.run(dbapi_connection, f"{verb} PREPARED '{xid}'")


# -- joining sessions to transactions ------------------------------------------------


def join_transaction(session, initial_state, transaction_manager, keep_session=False):
    if _SESSION_STATE.get(session, None) is None:
        RoutingDataManager(
            session, initial_state, transaction_manager, keep_session=keep_session
        )


def mark_changed(session, transaction_manager, keep_session=False):
    join_transaction(session, STATUS_CHANGED, transaction_manager, keep_session)
    _SESSION_STATE[session] = STATUS_CHANGED


# zope.sqlalchemy's session events, listened to once on the session factory
# (attaching them to each new session cost a request some 50 us), acting on
# sessions registered with a transaction manager (``register``).
# ``do_orm_execute`` and the bulk events are left out: the session marks
# its own writes.


def _join_on_use(session, *args):
    """``after_begin``, ``after_attach``: join the zope transaction."""
    joined = session._dbr_tm
    if joined is not None:
        manager, initial_state, keep_session = joined
        join_transaction(session, initial_state, manager, keep_session)


def _changed_by_flush(session, flush_context):
    session_changed(session)


def session_changed(session):
    """The session wrote: it has work to commit (if it is registered)."""
    joined = session._dbr_tm
    if joined is not None:
        manager, _initial_state, keep_session = joined
        mark_changed(session, manager, keep_session)


def _commit_only_through_the_manager(session):
    joined = session._dbr_tm
    if joined is not None and not session.in_nested_transaction():
        if joined[0].get().status != ZopeStatus.COMMITTING:
            raise DBRouterError(
                "this session is joined to a transaction manager: commit with "
                "the manager (request.tm.commit(), transaction.commit()), not "
                "with session.commit()"
            )


def listen_transaction_events(factory):
    """Install the handlers above on a session factory (``sessionmaker``)."""
    event.listen(factory, "after_begin", _join_on_use)
    event.listen(factory, "after_attach", _join_on_use)
    event.listen(factory, "after_flush", _changed_by_flush)
    event.listen(factory, "before_commit", _commit_only_through_the_manager)


_INITIAL_STATES = {
    STATUS_ACTIVE: STATUS_ACTIVE,
    STATUS_CHANGED: STATUS_CHANGED,
    STATUS_READONLY: STATUS_READONLY,
    "invalidated": STATUS_CHANGED,  # zope.sqlalchemy's old name for "changed"
}


def register(
    session,
    initial_state=STATUS_ACTIVE,
    transaction_manager=zope_transaction.manager,
    keep_session=False,
):
    """Join *session* to *transaction_manager*: zope.sqlalchemy's
    ``register``, with its arguments and meanings, for a
    :class:`~pyramid_dbrouter.RoutingSession` (or a factory of them, whose
    sessions are then all registered).

    ``initial_state="changed"`` commits even writes the session cannot see
    (SQL sent on ``session.connection()``) without ``mark_changed``;
    ``keep_session=True`` keeps the session open after the transaction ends
    (its objects expired, reloaded on next use) instead of closing it.
    """
    if initial_state not in _INITIAL_STATES:
        raise ValueError(
            f"initial_state={initial_state!r}: use one of "
            f"{STATUS_ACTIVE!r}, {STATUS_CHANGED!r}, {STATUS_READONLY!r}"
        )
    joined = (transaction_manager, _INITIAL_STATES[initial_state], keep_session)
    if isinstance(session, sessionmaker):
        session.configure(zope_registration=joined)
    else:
        session._dbr_tm = joined
    return session
