"""The transaction's data manager: one-phase, or a recoverable two-phase commit.

:class:`RoutingDataManager` joins a :class:`RoutingSession` to the zope
transaction, as zope.sqlalchemy's ``SessionDataManager`` does (it is one,
with the commit replaced).  It votes by preparing, and the commit is taken
by :meth:`~RoutingDataManager.decide`, called by the transaction's
:class:`~pyramid_dbrouter.decision_point.DecisionPoint` once every
participant has voted yes, from what each engine did in the transaction:

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
two-phase support             commits; everything rolled back
============================  ===============================================

Engines whose connections share one DBAPI connection (``execution_options()``
copies of an engine over a pool that shares a thread's connection, such as
the tenant plugin's attached albums) are one participant, one branch: their
work is one database transaction (:func:`~pyramid_dbrouter.writes.participants`).
Engines that only read are rolled back, never prepared.  The decision row is
the commit point: before it, any failure rolls every branch back; after it,
nothing is ever rolled back -- a failed ``COMMIT PREPARED`` is retried, then
left to ``dbrouter recover`` and logged loudly, and the request succeeds.
If the decision's own commit fails with an unknown outcome the request
raises and the prepared branches are left to recovery.
"""

import logging
import time
from enum import Enum, StrEnum

from sqlalchemy.exc import DBAPIError
from zope.sqlalchemy.datamanager import SessionDataManager

from . import checkpoints
from .branches import driver_for, make_xid
from .checkpoints import Checkpoint
from .decision_point import DecisionPoint
from .decisions import COMMIT
from .exceptions import UnsafeCommitError
from .twophase import XID, TransactionVotedNo, current_gtrid, outside_the_pool
from .writes import participants

log = logging.getLogger(__name__)

#: how often, and after how long, a failed COMMIT PREPARED is tried again
COMMIT_RETRIES = (0.05, 0.25, 1.0)


class State(StrEnum):
    """Where a data manager is in its transaction (``state``).  The values
    are zope.sqlalchemy's, which its methods set too."""

    INIT = "init"  # joined
    VOTED = "voted"  # voted yes: prepared what had to be
    DECIDED = "decided"  # the two-phase decision COMMIT is durable
    COMMITTED = "committed"
    NO_WORK = "no work"  # nothing to commit (zope.sqlalchemy's commit())
    ABORTED = "aborted"  # before the vote
    ABORTED_COMMIT = "aborted commit"  # at or after the vote


class Plan(Enum):
    """What :meth:`RoutingDataManager.decide` does, as found at vote time."""

    #: commit the session's transaction (one engine wrote, or none)
    ONE_PHASE = "one-phase"
    #: end the one branch that wrote (MySQL/MariaDB connections begin as XA
    #: branches), roll the others back
    ONE_BRANCH = "one-branch"
    #: record the two-phase decision (every writer is prepared)
    TWO_PHASE = "two-phase"


class Branch:
    """One engine's connection in the transaction being committed."""

    __slots__ = ("name", "engine", "connection", "driver", "wrote", "xid")

    def __init__(self, name, connection, wrote):
        self.name = name
        self.connection = connection
        self.engine = connection.engine
        self.driver = driver_for(connection.engine)
        self.wrote = wrote
        self.xid = connection.info.get(XID)

    @property
    def dbapi(self):
        return self.connection.connection.dbapi_connection

    def end(self, commit):
        """One-phase commit, or rollback, of a branch that was not prepared."""
        self.driver.end_unprepared(self.dbapi, self.xid, commit)
        self.connection.info.pop(XID, None)


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
        """The transaction's participants as branches, in the order of names
        (connections sharing one DBAPI connection are one branch)."""
        return [Branch(*each) for each in participants(self.session, self.tx)]

    def _reached(self, point, engine=None):
        checkpoints.reached(point, engine, self.gtrid)

    # -- voting -------------------------------------------------------------------

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
            self.plan = Plan.ONE_PHASE
        elif len(writers) < 2:
            for branch in branches:
                if not branch.wrote:
                    branch.end(commit=False)
            self.plan = Plan.ONE_BRANCH
        else:
            self._prepare(writers, [b for b in branches if not b.wrote])
            self.plan = Plan.TWO_PHASE
        self.state = State.VOTED

    def _prepare(self, writers, readers):
        policy = self.policy
        if policy is None:
            names = ", ".join(repr(b.name) for b in writers)
            raise UnsafeCommitError(
                f"engines {names} wrote in one transaction and dbrouter.twophase "
                "= off; nothing was committed"
            )
        policy.refuse_unsafe([(b.name, b.driver) for b in writers])
        last = [b for b in writers if not b.driver.supports_twophase]
        resources = [b for b in writers if b.driver.supports_twophase]
        for branch in resources:
            policy.check(branch.name, branch.engine)
        self.gtrid = current_gtrid(self.session)
        for branch in readers:
            branch.end(commit=False)
        for branch in resources:
            self._reached(Checkpoint.BEFORE_PREPARE, branch.name)
            xid = branch.xid or make_xid(policy.prefix, self.gtrid, branch.name)
            if not branch.driver.prepare(branch.dbapi, xid):
                raise TransactionVotedNo(
                    f"engine {branch.name!r} rolled its transaction back at PREPARE "
                    "(a statement had failed in it); nothing was committed"
                )
            self.prepared.append((branch, xid))
            branch.connection.info.pop(XID, None)  # no longer to be ended
            self._reached(Checkpoint.PREPARED, branch.name)
        self.last_resource = last[0] if last else None

    # -- the commit point -----------------------------------------------------------

    def decide(self, trans):
        """The commit point, reached once every participant voted yes."""
        plan, self.plan = self.plan, None
        if self.tx is None or plan is None:
            return
        if plan is Plan.ONE_PHASE:
            self.tx.commit()
            self._finish(State.COMMITTED)
        elif plan is Plan.ONE_BRANCH:
            for branch in self._branches():
                if branch.wrote:
                    branch.end(commit=True)
            self._finish(State.COMMITTED)
        else:
            self._record_decision()

    def _record_decision(self):
        policy = self.policy
        last = self.last_resource
        branches = [b.name for b, _ in self.prepared]
        if last is not None:
            self.decision_engine = last.name
            self._decide_in_last_resource(last, branches)
        else:
            name = self.decision_engine = policy.coordinator
            engine = policy.side(self.session.engines.get(name, "dbrouter.coordinator"))
            policy.decisions.write(
                name, engine, self.gtrid, branches, self._outcome_is_unknown
            )
        self.decided = COMMIT
        self._reached(Checkpoint.DECIDED)
        self.state = State.DECIDED

    def _outcome_is_unknown(self):
        self.outcome_unknown = True

    def _decide_in_last_resource(self, branch, branches):
        self._reached(Checkpoint.BEFORE_LAST_RESOURCE, branch.name)
        self.policy.decisions.write_in(
            branch.connection, branch.name, self.gtrid, branches
        )
        try:
            branch.dbapi.commit()
        except Exception:
            self._outcome_is_unknown()
            raise
        self._reached(Checkpoint.LAST_RESOURCE_COMMITTED, branch.name)

    # -- finishing ----------------------------------------------------------------

    def tpc_finish(self, trans):
        if self.decided != COMMIT:
            return super().tpc_finish(trans)
        left = [b.name for b, xid in self.prepared if not self._commit_branch(b, xid)]
        if left:
            log.critical(
                "transaction %s was decided COMMIT but engines %s could not be "
                "committed yet; run `dbrouter recover` to finish it",
                self.policy.decisions.key(self.gtrid),
                ", ".join(left),
            )
        else:
            # removed with the next decision written there (one round trip
            # saved per transaction), or by recovery
            self.policy.decisions.forget_later(
                self.decision_engine, [self.policy.decisions.key(self.gtrid)]
            )
        self._finish(State.COMMITTED)

    def _commit_branch(self, branch, xid):
        self._reached(Checkpoint.BEFORE_COMMIT_PREPARED, branch.name)
        try:
            branch.driver.commit_prepared(branch.dbapi, xid)
            self._reached(Checkpoint.COMMITTED, branch.name)
            return True
        except Exception as exc:
            log.error("COMMIT of prepared branch %s failed: %s", xid, exc)
            branch.connection.invalidate()
        for delay in COMMIT_RETRIES:
            time.sleep(delay)
            try:
                with outside_the_pool(branch.engine) as other:
                    branch.driver.finish_prepared(other, xid, commit=True)
                return True
            except DBAPIError as exc:
                if branch.driver.is_unknown_xid(exc):
                    # committed meanwhile: by the failed attempt, or recovery
                    return True
                log.error("retrying COMMIT of prepared branch %s failed: %s", xid, exc)
            except Exception as exc:
                log.error("retrying COMMIT of prepared branch %s failed: %s", xid, exc)
        return False

    # -- aborting -------------------------------------------------------------

    def _roll_back_prepared(self):
        if self.decided == COMMIT:
            log.critical("refusing to roll back a transaction decided COMMIT")
            return
        if self.outcome_unknown:
            log.critical(
                "the decision of transaction %s has an unknown outcome; its "
                "prepared branches %s are left to `dbrouter recover`",
                self.policy.decisions.key(self.gtrid),
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
            self._finish(State.ABORTED_COMMIT)

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
