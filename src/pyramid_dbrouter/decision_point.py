"""The commit point of a zope transaction: reached after every vote.

The ``transaction`` package asks each participant to vote (``tpc_vote``) in
the order of their sort keys, then to finish (``tpc_finish``).  A session's
data manager cannot commit, nor record a two-phase decision, in its own
vote: a participant that sorts after it -- another session, a mail or queue
data manager -- may still vote no, and what was committed or decided could
not be undone (a retried request would then write twice).

So every :class:`~pyramid_dbrouter.datamanager.RoutingDataManager` of a zope
transaction votes by preparing only, and one :class:`DecisionPoint`, joined
to the transaction with the first of them, sorts after every participant
and takes the decisions in its own vote: when it votes, everybody else has
voted yes, and nobody has finished yet.  A failure there is still a clean
abort of the whole transaction.  A participant whose sort key would come
after the decision point is detected, and the commit refused, before
anything is decided.

Sessions of one transaction take their decisions one after the other, in the
order they joined: each session's engines are committed atomically, but two
sessions are two decisions (as two zope.sqlalchemy sessions are two
commits).  One session over many engines is the way to one decision.
"""

import weakref

from transaction.interfaces import IDataManagerSavepoint, ISavepointDataManager
from zope.interface import implementer

from .exceptions import DBRouterError
from .internals import participants

#: sorts after any key but one made on purpose to come later still
SORT_KEY = "\U0010ffff" * 4 + "pyramid_dbrouter.decision_point"

_POINTS = weakref.WeakKeyDictionary()  # zope transaction -> its DecisionPoint


def _sort_key(resource):
    # what transaction's own ``rm_key`` sorts participants by
    key = getattr(resource, "sortKey", None)
    return key() if key is not None else None


@implementer(ISavepointDataManager)
class DecisionPoint:
    """Takes the decisions of every routing session of one transaction."""

    def __init__(self, transaction_manager):
        self.transaction_manager = transaction_manager
        self.managers = []

    @classmethod
    def join(cls, transaction_manager, manager):
        """Join the current transaction's decision point (made on first use)."""
        trans = transaction_manager.get()
        point = _POINTS.get(trans)
        if point is None:
            point = _POINTS[trans] = cls(transaction_manager)
            trans.join(point)
        point.managers.append(manager)
        return point

    def __repr__(self):
        return f"<DecisionPoint of {len(self.managers)} session(s)>"

    def sortKey(self):
        return SORT_KEY

    def _check_last(self, trans):
        later = [
            r
            for r in participants(trans)
            if r is not self and (_sort_key(r) or "") >= SORT_KEY
        ]
        if later:
            raise DBRouterError(
                f"{later[0]!r} sorts (sortKey {_sort_key(later[0])!r}) after "
                "pyramid_dbrouter's commit point, which must come after every "
                "vote; nothing was committed. Give that data manager a sort key "
                f"below {SORT_KEY!r}"
            )

    def tpc_vote(self, trans):
        self._check_last(trans)
        managers, self.managers = self.managers, []
        for manager in managers:
            manager.decide(trans)

    def abort(self, trans):
        self.managers = []

    def tpc_abort(self, trans):
        self.managers = []

    def tpc_begin(self, trans):
        pass

    def commit(self, trans):
        pass

    def tpc_finish(self, trans):
        pass

    def savepoint(self):
        return _NothingToRollBack()


@implementer(IDataManagerSavepoint)
class _NothingToRollBack:
    """The decision point holds no data: its savepoints have nothing to undo."""

    def rollback(self):
        pass
