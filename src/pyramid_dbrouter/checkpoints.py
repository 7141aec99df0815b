"""The named points of the commit sequence, where fault-injection tests stop it.

The data manager, the decision log and recovery call :func:`reached` at each
:class:`Checkpoint`; it does nothing.  Tests replace it (``monkeypatch`` in
the process, ``setattr`` in a subprocess they are about to kill) to kill the
process, stop a server or terminate a connection right there, and read the
global transaction id of the commit it was reached in.  Callers look it up
on this module at each call (``checkpoints.reached(...)``) so that the
replacement is seen everywhere.
"""

from enum import Enum


class Checkpoint(Enum):
    """A point of the commit or of recovery, in the order a commit meets them.

    The values are the names the fault-injection scenarios use.
    """

    #: a branch (the engine given) is about to be prepared
    BEFORE_PREPARE = "before-prepare"
    #: a branch (the engine given) is prepared
    PREPARED = "prepared"
    #: the decision is written on the coordinator, not yet committed (on
    #: PostgreSQL: about to be sent, in one round trip with its commit)
    BEFORE_DECISION_COMMITS = "before-decision-commits"
    #: the last resource (the engine given) is about to commit, with the decision
    BEFORE_LAST_RESOURCE = "before-last-resource"
    #: the last resource (the engine given) committed, with the decision
    LAST_RESOURCE_COMMITTED = "last-resource-committed"
    #: the decision COMMIT is durable: the commit point is past
    DECIDED = "decided"
    #: a prepared branch (the engine given) is about to be committed
    BEFORE_COMMIT_PREPARED = "before-commit-prepared"
    #: a prepared branch (the engine given) is committed
    COMMITTED = "committed"
    #: ``dbrouter recover`` is about to commit or roll back a branch it
    #: found (the engine named in its transaction id)
    RECOVERY_FINISHES = "recovery-finishes"


def reached(point, engine=None, gtrid=None):
    """The commit of global transaction *gtrid* reached *point*, on *engine*
    (an engine name, or None for the points that concern no one engine).

    Does nothing: the seam that fault-injection tests replace.
    """
