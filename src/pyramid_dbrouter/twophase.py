"""An application's two-phase commit: its settings, and its transaction ids.

:class:`TwoPhasePolicy` holds the ``dbrouter.*`` transaction settings of one
application, what it learnt about its engines (whether each can keep a
prepared branch), the side pools of the commit's own statements, and its
:class:`~pyramid_dbrouter.decisions.DecisionLog`.  Each session's
transaction gets one global transaction id (:func:`current_gtrid`); its
branch on engine ENGINE is ``PREFIX:GTRID:ENGINE``.  MySQL and MariaDB
connections begin as branches (:func:`start_branch`).

The commit itself is the data manager's (:mod:`.datamanager`).
"""

import secrets
import threading
import weakref
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from .branches import autocommit, begins_as_branch, driver_for, make_xid
from .decisions import DecisionLog
from .exceptions import DBRouterError, UnsafeCommitError

#: ``Connection.info`` key of the transaction id of a connection that began
#: as a branch (MySQL, MariaDB), until it is prepared or ended
XID = "dbrouter.xid"


class TransactionVotedNo(DBRouterError):
    """A branch could not be prepared: the whole transaction is rolled back."""


class TwoPhasePolicy:
    """The ``dbrouter.*`` transaction settings of one application."""

    def __init__(self, engines, mode="auto", coordinator="default", prefix="dbr"):
        self.engines = engines
        self.mode = mode
        self.coordinator = coordinator
        self.prefix = prefix
        self.decisions = DecisionLog(prefix)
        self._checked = {}
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

    def new_gtrid(self):
        return secrets.token_hex(8)

    def check(self, name, engine, outcome="nothing was committed"):
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
                f"{outcome}"
            )

    def refuse_unsafe(self, writers, planned=False):
        """Raise :class:`UnsafeCommitError` if the engines *writers*,
        ``[(name, branch driver)]``, cannot be committed together: with
        ``dbrouter.twophase = off``, or when more than one of them cannot
        prepare.  The commit asks when two or more engines wrote; a bulk
        write on several engines asks before it runs (*planned*)."""
        names = ", ".join(repr(name) for name, _driver in writers)
        wrote, all_wrote = (
            ("would write", "would all write")
            if planned
            else (
                "wrote",
                "all wrote",
            )
        )
        outcome = "nothing was run" if planned else "nothing was committed"
        if self.mode == "off":
            raise UnsafeCommitError(
                f"engines {names} {wrote} in one transaction and dbrouter.twophase "
                f"= off; {outcome}"
            )
        last = [name for name, driver in writers if not driver.supports_twophase]
        if len(last) > 1:
            raise UnsafeCommitError(
                f"engines {names} {all_wrote} in one transaction, and "
                f"{', '.join(repr(n) for n in last)} cannot take part in a "
                "two-phase commit (at most one such engine may write, committed "
                f"last); {outcome}"
            )


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
    if not begins_as_branch(connection.dialect):
        # the common case (SQLite, PostgreSQL), with no ``connection.info``:
        # only a branch's connection ever holds an XID
        return
    driver = driver_for(connection.engine)
    connection.info.pop(XID, None)
    policy = session._dbr_policy
    if policy is None or policy.mode != "auto":
        return
    name = session.engines.name_of(connection.engine)
    xid = make_xid(policy.prefix, current_gtrid(session), name)
    driver.start(connection.connection.dbapi_connection, xid)
    connection.info[XID] = xid
