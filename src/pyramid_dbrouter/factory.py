"""The session factory, and sessions joined to a transaction manager.

:func:`get_session_factory` makes the ``sessionmaker`` of
:class:`RoutingSession` (the cookiecutter-starter's signature);
:func:`get_tm_session` and :func:`request_dbsession` give sessions joined to
a transaction manager (``request.tm`` in a request), as in the starter.

What happens at commit depends on how many engines *wrote* (ran INSERT,
UPDATE, DELETE or DDL) in the transaction.  Under a transaction manager,
the data manager commits (its table, in :mod:`.datamanager`, has the
details); a plain ``session.commit()`` cannot commit in two phases:

=====================  ============================  ============================
engines that wrote     under a transaction manager   a plain ``session.commit()``
=====================  ============================  ============================
none                   every engine rolled back      committed (nothing written)
one                    one-phase commit              one-phase commit
two or more, at most   two-phase commit (the one     :class:`UnsafeCommitError`,
one without two-phase  without: the last resource)   all rolled back
support
two or more without    :class:`UnsafeCommitError`,   :class:`UnsafeCommitError`,
two-phase support      all rolled back               all rolled back
=====================  ============================  ============================

Savepoints never reset what an engine has written.
"""

from collections.abc import Mapping

import zope.sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from .branches import driver_for
from .engines import EngineRegistry
from .exceptions import UnsafeCommitError
from .registration import listen_transaction_events, register
from .routers import RouterChain, check_router
from .session import RoutingSession
from .settings import DEFAULT
from .twophase import TwoPhasePolicy, start_branch
from .writes import participants, track_writes


def writers(session):
    """The names of the engines that wrote in *session*'s transaction."""
    return [name for name, _conn, did in participants(session) if did]


def _before_commit(session):
    if session.in_nested_transaction():
        return
    # SQLAlchemy calls this hook before its final flush: flush now, so that
    # every write is known before anything commits
    session.flush()
    wrote = writers(session)
    if len(wrote) > 1:
        raise UnsafeCommitError(
            f"engines {', '.join(repr(n) for n in wrote)} all wrote in one "
            "transaction, and they cannot be committed atomically together "
            "(at most one engine without two-phase support may write); nothing "
            "was committed. Write to one of them per transaction, or move the "
            "data to engines that support two-phase commit."
        )


def get_session_factory(
    engine, routers=None, policy=None, *, factory=None, **session_options
):
    """A session factory (``sessionmaker``) of :class:`RoutingSession`.

    *engine* is the ``default`` Engine (the cookiecutter-starter's
    signature), a mapping of names to Engines, or an ``EngineRegistry``;
    *routers* a sequence of routers or a ``RouterChain``; *policy* the
    :class:`~pyramid_dbrouter.twophase.TwoPhasePolicy` (``dbrouter.*``
    defaults if None).  *factory*, a ``sessionmaker`` of ours made earlier
    (``includeme`` hands one out at once, as the starter does), is
    configured in place instead of making a new one.
    """
    if session_options.get("twophase"):
        raise TypeError(
            "get_session_factory(twophase=True): pyramid_dbrouter decides itself "
            "when to commit in two phases (when two or more engines wrote; see "
            "dbrouter.twophase), and never prepares a lone writer; leave "
            "twophase out"
        )
    if isinstance(engine, EngineRegistry):
        engines = engine
    else:
        engines = EngineRegistry()
        items = engine.items() if isinstance(engine, Mapping) else [(DEFAULT, engine)]
        for name, each in items:
            if not isinstance(each, Engine):
                raise TypeError(f"engine {name!r}: {each!r} is not an Engine")
            engines.add(name, each)
    if not isinstance(routers, RouterChain):
        routers = RouterChain([check_router(r) for r in routers or ()])
    if policy is None:
        policy = TwoPhasePolicy(engines)
    # the starter's session knows its engine: ``dbsession.bind`` is default's
    bind = engines.get(DEFAULT) if DEFAULT in engines.names() else None
    options = dict(engines=engines, routers=routers, policy=policy, bind=bind)
    if factory is None:
        factory = unconfigured_factory()
    factory.configure(**options, **session_options)
    listen_transaction_events(factory)
    if engines.is_multi():
        engines.on_new_engine = track_writes
        for _name, each in engines.static_items():
            track_writes(each)
        if policy.mode == "auto" and (
            engines.factories
            or any(driver_for(e).begins_as_branch for _n, e in engines.static_items())
        ):
            # MySQL and MariaDB connections begin as XA branches
            event.listen(factory, "after_begin", start_branch)
        event.listen(factory, "before_commit", _before_commit)
    return factory


def unconfigured_factory():
    """A session factory of :class:`RoutingSession` that
    :func:`get_session_factory` configures later."""
    return sessionmaker(class_=RoutingSession, engines=None, routers=None)


def get_tm_session(session_factory, transaction_manager, request=None):
    """A session from *session_factory* joined to *transaction_manager*.

    As in the cookiecutter-starter: the transaction manager commits or
    aborts it; ``request`` (or None) is passed to routers as a hint.
    """
    dbsession = session_factory(info={"request": request})
    if isinstance(dbsession, RoutingSession):
        register(dbsession, transaction_manager=transaction_manager)
    else:
        zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def request_dbsession(request):
    """``request.dbsession``: one session per request, joined to ``request.tm``.

    ``request.environ["app.dbsession"]`` replaces it (a test seam: the
    cookiecutter-starter's ``testapp`` fixture shares one doomed session).
    """
    dbsession = request.environ.get("app.dbsession")
    if dbsession is None:
        factory = request.registry["dbsession_factory"]
        dbsession = get_tm_session(factory, request.tm, request=request)
    else:
        # the shared session serves this request now: routers see it
        dbsession.info["request"] = request
    return dbsession
