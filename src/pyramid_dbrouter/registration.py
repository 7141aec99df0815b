"""Joining sessions to a zope transaction manager: zope.sqlalchemy's
``register``, for :class:`~pyramid_dbrouter.RoutingSession`.

A registered session joins the manager's current transaction through a
:class:`~pyramid_dbrouter.datamanager.RoutingDataManager` when it begins,
and is marked *changed* (it has work to commit) when it writes.  The
handlers are listened to once on the session factory, not on each session.
"""

import transaction as zope_transaction
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker
from zope.sqlalchemy.datamanager import (
    STATUS_ACTIVE,
    STATUS_CHANGED,
    STATUS_READONLY,
)

from .datamanager import RoutingDataManager
from .exceptions import DBRouterError
from .internals import SESSION_STATE
from .internals import TransactionStatus as ZopeStatus


def join_transaction(session, initial_state, transaction_manager, keep_session=False):
    if SESSION_STATE.get(session, None) is None:
        RoutingDataManager(
            session, initial_state, transaction_manager, keep_session=keep_session
        )


def mark_changed(session, transaction_manager, keep_session=False):
    join_transaction(session, STATUS_CHANGED, transaction_manager, keep_session)
    SESSION_STATE[session] = STATUS_CHANGED


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
