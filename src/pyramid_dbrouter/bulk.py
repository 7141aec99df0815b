"""Bulk UPDATE and DELETE on several engines: one statement, one transaction.

When ``db_for_write`` answers a list of engine names for an UPDATE or a
DELETE -- Core ``update()``/``delete()``, ORM-enabled ones, the legacy
``Query.update()``/``delete()`` -- the statement runs on each of those
engines in turn, each on that engine's connection of the session's
transaction, exactly as one routed to that engine alone would (identity
token, ``synchronize_session``, marked changed), and the answers are one
result (``Result.merge``): ``rowcount`` is the sum, RETURNING rows are every
engine's, in the order of the names.  The transaction then commits them
together as it commits any transaction that wrote to several engines
(two-phase, or with one last resource: :mod:`.datamanager`).

Whether it can is decided before any SQL: the engines named, and those that
already wrote in the transaction, must be ones its commit can commit
together, or :class:`~pyramid_dbrouter.UnsafeCommitError` is raised with the
commit's own words and nothing is run.  The engines are written one after
the other in the caller's thread, not in the fan-out's workers: the ORM's
synchronisation of each engine's objects needs the session, which is not
thread-safe, and a write holds its row locks until the commit anyway.
"""

from .branches import driver_for
from .exceptions import RouterAnswerError, UnsafeCommitError
from .internals import propagate_attrs, statement_options, with_load_token
from .writes import connections, wrote

#: the ``synchronize_session`` values that evaluate the WHERE in Python
_EVALUATED = ("auto", "evaluate")


def check_atomic(session, names, source):
    """Refuse, before any SQL, a write on engines *names* that *session*'s
    transaction could not commit together (:class:`UnsafeCommitError`, naming
    the engines and the reason, as the commit would).

    *source* (the Route) is named if an engine is unknown.
    """
    already = [name for name, conn in connections(session) if wrote(conn)]
    writers = sorted({*already, *names})
    if len(writers) < 2:
        return
    quoted = ", ".join(repr(n) for n in writers)
    if session._dbr_tm is None:
        raise UnsafeCommitError(
            f"engines {quoted} would all write in one transaction, and "
            "session.commit() cannot commit several engines atomically (a session "
            "joined to a transaction manager, such as request.dbsession or "
            "session_scope, commits them in two phases); nothing was run"
        )
    policy = session._dbr_policy
    if policy is None:
        raise UnsafeCommitError(
            f"engines {quoted} would write in one transaction and dbrouter.twophase "
            "= off; nothing was run"
        )
    engines = [(name, session.engine(name, source)) for name in writers]
    drivers = [(name, driver_for(engine)) for name, engine in engines]
    policy.refuse_unsafe(drivers, planned=True)
    for (name, engine), (_name, driver) in zip(engines, drivers, strict=True):
        if driver.supports_twophase:
            # what the commit checks at PREPARE (max_prepared_transactions...)
            policy.check(name, engine, outcome="nothing was run")


def default_sync(session, statement, execution_options):
    """*execution_options* for an ORM UPDATE or DELETE on the ``default``
    engine, whose objects have the identity token None.

    SQLAlchemy's ``evaluate`` synchronisation takes a None token for "every
    object": it would change in memory the objects of other engines that the
    WHERE matches, though their rows were not touched.  When the session holds
    such objects, ``fetch`` is asked instead, which matches rows by primary
    key and token (one RETURNING, or one SELECT where there is none).
    """
    subject = propagate_attrs(statement).get("plugin_subject")
    mapper = getattr(subject, "mapper", None)
    if mapper is None:
        return execution_options
    sync = execution_options.get("synchronize_session")
    if sync is None:
        sync = statement_options(statement).get("synchronize_session", "auto")
    if sync not in _EVALUATED:
        return execution_options
    model = mapper.class_
    for cls, _identity, token in session.identity_map.keys():
        if token is not None and (issubclass(cls, model) or issubclass(model, cls)):
            options = dict(execution_options)
            options["synchronize_session"] = "fetch"
            return options
    return execution_options


def dml_options(statement, execution_options, token):
    """*execution_options* of an ORM INSERT, UPDATE or DELETE on the engine
    of identity *token* (not None): the objects its RETURNING builds are that
    engine's, as a SELECT's are."""
    if propagate_attrs(statement).get("compile_state_plugin") != "orm":
        return execution_options
    return with_load_token(execution_options, token)


def execute_bulk(
    session, names, routed, statement, params, execution_options, bind_arguments, kw
):
    """Run the UPDATE or DELETE *statement* on each engine of *names*, in the
    session's transaction; return one Result (``rowcount`` summed)."""
    attrs = propagate_attrs(statement)
    if attrs.get("compile_state_plugin") == "orm" and isinstance(params, list):
        mapper = getattr(attrs.get("plugin_subject"), "mapper", None)
        model = f" of {mapper.class_.__name__}" if mapper is not None else ""
        # SQLAlchemy's "bulk" strategy: rows named by primary key, each on one
        # engine; every engine would miss the others' (StaleDataError)
        raise RouterAnswerError(
            f"{routed.reason} sends an ORM bulk {_verb(statement)}{model} by "
            f"primary key ({len(params)} parameter sets) to engines {names!r}: "
            "each row is on one engine, so each engine would miss the others' "
            "rows; run each engine's parameter sets with session.using_bind(name) "
            "(nothing was sent to any database)"
        )
    check_atomic(session, names, routed)
    scalar = kw.pop("_scalar_result", False)
    results = []
    for name in names:
        options = dict(execution_options)
        token = session.engines.identity_token(name)
        if token is None:
            options = default_sync(session, statement, options)
        else:
            options["identity_token"] = token
            options = dml_options(statement, options, token)
        binds = dict(bind_arguments or ())
        binds["bind"] = session.engine(name, routed)
        # the session's own path for a statement with its engine given: the
        # ORM's pre-synchronisation, execution and post-synchronisation on
        # that engine's objects, and the write marked for the commit
        results.append(
            session.execute(
                statement, params, execution_options=options, bind_arguments=binds, **kw
            )
        )
    merged = results[0].merge(*results[1:])
    return merged.scalar() if scalar else merged


def _verb(statement):
    return "UPDATE" if statement.is_update else "DELETE"
