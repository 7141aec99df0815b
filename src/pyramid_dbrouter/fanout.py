"""Reading from several engines at once, merged as if one database answered.

When ``db_for_read`` answers a list of names, the statement runs on each of
those engines, each on that engine's connection of the session's transaction,
and the answers are merged (:mod:`pyramid_dbrouter.fanout_merge`,
:mod:`pyramid_dbrouter.fanout_aggregate`) -- or, with
``execution_options(fanout="concat")``, given engine after engine.

Where the time goes decides how the engines are read:

* an engine with I/O to wait for (a server) is read by a worker of a pool
  shared by the application (``dbrouter.fanout_workers`` threads, started once
  and reused): its waits overlap with the others';
* an engine without (SQLite, in process) is read in the caller's thread:
  a thread would only add a hand-over to a query that holds the GIL anyway.

``dbrouter.fanout_parallel`` (``auto``, ``always``, ``never``) overrides the
choice.  Only the conversation with the database happens in a worker: the
statement is prepared, the connections are taken, and the objects are built
in the caller's thread, because a Session is not thread-safe.

``dbrouter.fanout_timeout`` bounds how long the caller waits for the workers:
a database that has not answered by then has its query cancelled, and the
read raises :class:`FanoutTimeoutError` naming it.  A database that fails
fails the whole read (:class:`FanoutEngineError`, naming it).  Either way the
caller gets no rows at all, never a partial answer, and no worker still holds
a connection when the error reaches the caller (who then rolls back).
"""

import threading
import time
import weakref
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from sqlalchemy import __version__ as sqlalchemy_version
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from sqlalchemy.util import immutabledict, to_list

from .exceptions import FanoutError
from .fanout_aggregate import AggregatePlan, is_aggregate
from .fanout_merge import (
    _CACHE_SIZE,
    _ORDERINGS,
    Ordering,
    RowsPlan,
    buffered,
    fetch_raw,
    refuse,
)
from .internals import (
    autoflush,
    cache_key,
    connection_for_bind,
    distinct_on,
    orm_compile_state,
    propagate_attrs,
    soft_close,
    statement_options,
)
from .settings import DEFAULT

MODES = ("merge", "concat")
# SQLAlchemy 2.1 added Session.execution_options, and its ORM
# orm_pre_session_exec() returns the parameters as well
_SA_2_1 = tuple(int(part) for part in sqlalchemy_version.split(".")[:2]) >= (2, 1)
PARALLEL_MODES = ("auto", "always", "never")
#: ``fanout_unique``: which engine's copy of a row found in several is kept
#: (``"first"``: the first engine's; a callable ``(engine name) -> group``:
#: the first engine's of its group, rows of other groups never compared)
UNIQUE = ("first",)
#: dialects that run in this process: nothing to overlap
IN_PROCESS_DIALECTS = frozenset({"sqlite"})
DEFAULT_WORKERS = 8


def plan_for(statement, dialect_name, names):
    """The merge plan of *statement* over the engines *names*, or FanoutError."""
    key = cache_key(statement) if isinstance(statement, Select) else None
    key = None if key is None else key.key  # the hashable part: the shape
    if key is not None:
        ordering = _ORDERINGS.get((key, dialect_name))
        if ordering is not None:
            return RowsPlan(statement, names, ordering)
    if not isinstance(statement, Select):
        refuse(statement, names, f"a {type(statement).__name__}")
    if distinct_on(statement):
        refuse(statement, names, "DISTINCT ON")
    extensions = getattr(statement, "_get_syntax_extensions_as_dict", None)
    for extension in (extensions() if extensions else {}).values():
        # e.g. PostgreSQL's distinct_on() in SQLAlchemy 2.1
        what = type(extension).__name__
        refuse(statement, names, "DISTINCT ON" if "DistinctOn" in what else what)
    if is_aggregate(statement, names):
        # not cached: HAVING's literal values are part of the plan
        return AggregatePlan(statement, dialect_name, names)
    ordering = Ordering(statement, dialect_name, names)
    if key is not None:
        if len(_ORDERINGS) >= _CACHE_SIZE:
            _ORDERINGS.pop(next(iter(_ORDERINGS)), None)
        _ORDERINGS[key, dialect_name] = ordering
    return RowsPlan(statement, names, ordering)


class FanoutTimeoutError(FanoutError):
    """A database did not answer a fan-out read within ``dbrouter.fanout_timeout``."""

    def __init__(self, message, engines):
        super().__init__(message)
        #: the names of the engines that had not answered
        self.engines = engines


class FanoutEngineError(FanoutError):
    """A database failed during a fan-out read; ``__cause__`` is its error."""

    def __init__(self, message, engine):
        super().__init__(message)
        #: the name of the engine that failed
        self.engine = engine


class FanoutPool:
    """How one application reads fan-outs: its worker pool and its limits.

    The threads start on first use, at most *workers* of them, and are then
    reused by every fan-out of every request of the application.
    """

    def __init__(self, workers=DEFAULT_WORKERS, timeout=None, parallel="auto"):
        self.workers = workers
        self.timeout = timeout
        self.parallel = parallel
        self._executor = None
        self._lock = threading.Lock()

    def executor(self):
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self.workers, thread_name_prefix="dbrouter-fanout"
                    )
        return self._executor

    def shutdown(self):
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def in_worker(self, engine):
        """Whether *engine* is read by a worker rather than by the caller."""
        if self.parallel == "auto":
            return engine.dialect.name not in IN_PROCESS_DIALECTS
        return self.parallel == "always"


_POOLS = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def configure_fanout(engines, workers=DEFAULT_WORKERS, timeout=None, parallel="auto"):
    """Give the :class:`~pyramid_dbrouter.engines.EngineRegistry` *engines*
    its fan-out pool (the ``dbrouter.fanout_*`` settings); return it."""
    pool = FanoutPool(workers, timeout, parallel)
    with _POOLS_LOCK:
        old = _POOLS.get(engines)
        _POOLS[engines] = pool
    if old is not None:
        old.shutdown()
    # the threads end with the application's engines
    weakref.finalize(engines, pool.shutdown)
    return pool


def fanout_pool(engines):
    """The fan-out pool of *engines* (the defaults if none was configured)."""
    pool = _POOLS.get(engines)
    if pool is None:
        with _POOLS_LOCK:
            pool = _POOLS.get(engines)
        if pool is None:
            pool = configure_fanout(engines)
    return pool


# -- get() over several engines ---------------------------------------------------


def identity_first(session, entity, ident, names):
    """The object of primary key *ident* already in the session under one of
    the engines *names* (in order), or None: no SQL is emitted.

    An expired object is left to ``get()``, which refreshes it."""
    mapper = inspect(entity).mapper
    if isinstance(ident, dict):
        try:
            ident = [
                ident[mapper.get_property_by_column(c).key] for c in mapper.primary_key
            ]
        except KeyError:
            return None  # get() raises its own error
    identity = to_list(ident, default=[None])
    if len(identity) != len(mapper.primary_key):
        return None
    identity_map = session.identity_map
    for name in names:
        key = mapper.identity_key_from_primary_key(
            identity, identity_token=None if name == DEFAULT else name
        )
        instance = identity_map.get(key)
        if instance is None:
            continue
        state = inspect(instance)
        if state.expired or (mapper.inherits and not state.mapper.isa(mapper)):
            return None
        return instance
    return None


# -- statements -------------------------------------------------------------------


def execute_fanout(
    session, names, statement, params, execution_options, bind_arguments, kw
):
    """Run *statement* on the engines *names*; return one merged Result."""
    options = statement_options(statement).union(execution_options)
    mode = options.get("fanout", "merge")
    if mode not in MODES:
        raise FanoutError(
            f"execution option fanout={mode!r} is not one of {', '.join(MODES)}"
        )
    unique = options.get("fanout_unique") or session.fanout_unique
    groups = None
    if unique is not None and unique not in UNIQUE:
        if not callable(unique):
            raise FanoutError(
                f"execution option fanout_unique={unique!r} is not one of "
                f"{', '.join(UNIQUE)}, a callable (engine name) -> group, or None"
            )
        groups = [unique(name) for name in names]
        if len(set(groups)) == len(groups):
            unique = groups = None  # no two engines can hold the same rows
    engines = [(name, session.engine(name, "a router")) for name in names]
    plan = None
    if mode == "merge":
        # refuses what cannot be merged exactly, before any SQL
        plan = plan_for(statement, engines[0][1].dialect.name, names)
        statement = plan.statement
    prepared = _prepare(
        session, engines, statement, params, execution_options, bind_arguments
    )
    if unique is not None and plan is not None and not isinstance(plan, RowsPlan):
        raise FanoutError(
            "an aggregate over engines whose rows may repeat (fanout_unique="
            f"{unique!r}) cannot be merged exactly: engines {', '.join(names)}"
        )
    # one row per identity needs the objects: no merging of raw rows first
    bounded = plan is not None and getattr(plan, "bounded", False) and not unique
    jobs, cursors, rows = _run(fanout_pool(session.engines), prepared, names, bounded)
    order = None
    if bounded:
        # at most OFFSET + LIMIT rows each: merged before objects are built,
        # so that only the rows kept become objects
        raw = plan.merge_raw(cursors, rows)
        if raw is None:
            cursors = [buffered(c, r) for c, r in zip(cursors, rows, strict=True)]
        else:
            used, order = raw
            for cursor in cursors:
                soft_close(cursor)
            jobs = [jobs[i] for i, _cursor in used]
            cursors = [cursor for _i, cursor in used]
    results = _results(session, jobs, cursors)
    if plan is None:
        merged = results[0].merge(*results[1:])
    elif order is not None:
        merged = plan.merge(results, order)
    elif unique is not None:
        merged = plan.merge(results, unique=unique, groups=groups)
    else:
        merged = plan.merge(results)
    return merged.scalar() if kw.get("_scalar_result") else merged


def _results(session, jobs, cursors):
    """The Results of *cursors*, objects built by the ORM (in this thread)."""
    results = []
    for job, cursor in zip(jobs, cursors, strict=True):
        if job.cls is None:
            results.append(cursor)
        else:
            results.append(
                job.cls.orm_setup_cursor_result(
                    session, job.stmt, job.params, job.options, job.binds, cursor
                )
            )
    return results


class _Job:
    __slots__ = ("name", "engine", "cls", "conn", "stmt", "params", "options", "binds")

    def __init__(self, name, engine, cls, conn, stmt, params, options, binds):
        self.name = name
        self.engine = engine
        self.cls = cls
        self.conn = conn
        self.stmt = stmt
        self.params = params
        self.options = options
        self.binds = binds


def _prepare(session, engines, statement, params, execution_options, bind_arguments):
    """Begin each engine's part of the transaction and prepare its statement,
    in this thread (both touch the session): yields each engine's job as soon
    as it is ready, so that a worker can start on it at once."""
    orm = propagate_attrs(statement).get("compile_state_plugin", None) == "orm"
    compile_state_cls = orm_compile_state(statement) if orm else None
    if _SA_2_1 and session.execution_options:
        execution_options = session.execution_options.union(execution_options)
    first = None  # the first engine's ORM options, which the others share
    for index, (name, engine) in enumerate(engines):
        token = None if name == DEFAULT else name
        stmt, stmt_params = statement, params
        if compile_state_cls is not None and first is not None:
            # what orm_pre_session_exec() gave the first engine, with this
            # engine's identity token (and no second autoflush)
            options, binds = first
            load = options["_sa_orm_load_options"]
            options = options.union(
                {
                    "_sa_orm_load_options": load
                    + {"_identity_token": token, "_autoflush": False}
                }
            )
            binds = dict(binds)
            binds["bind"] = engine
        else:
            # immutable, as Session.execute hands them on: the ORM calls .union()
            options = immutabledict(execution_options)
            if token is not None:
                options = options.union({"identity_token": token})
            binds = dict(bind_arguments or ())
            binds["bind"] = engine
            if compile_state_cls is not None:
                prepared = compile_state_cls.orm_pre_session_exec(
                    session, statement, params, options, binds, False
                )
                if _SA_2_1:
                    stmt, options, stmt_params = prepared
                else:
                    stmt, options = prepared
                if "_sa_orm_load_options" in options:
                    first = (options, binds)
            else:
                binds.setdefault("clause", statement)
                if not index:
                    autoflush(session)
        conn = connection_for_bind(session, engine)
        yield _Job(
            name, engine, compile_state_cls, conn, stmt, stmt_params, options, binds
        )


def _execute(job, prefetch):
    """Run *job*; with *prefetch*, read its raw rows too (where they are read
    matters when the cursor is on the server, as with ``yield_per``)."""
    cursor = job.conn.execute(job.stmt, job.params or {}, execution_options=job.options)
    return cursor, fetch_raw(cursor) if prefetch else None


def _run(pool, prepared, names, prefetch=False):
    """Execute each job of *prepared* as it comes; return the jobs, their
    cursors, and their raw rows if *prefetch* (else Nones), in order."""
    jobs, futures, local = [], {}, []
    failure = None
    started = None
    try:
        for job in prepared:
            jobs.append(job)
            if pool.in_worker(job.engine):
                if started is None:
                    started = time.monotonic()
                future = pool.executor().submit(_execute, job, prefetch)
                futures[future] = len(jobs) - 1
            else:
                local.append(len(jobs) - 1)
    except Exception as exc:  # noqa: BLE001 - raised once the workers are done
        failure = (names[len(jobs)], exc)  # the engine being prepared
    outcomes = [(None, None)] * len(jobs)
    # the caller reads the in-process engines while the workers wait
    for index in local if failure is None else ():
        try:
            outcomes[index] = _execute(jobs[index], prefetch)
        except Exception as exc:  # noqa: BLE001 - raised once the workers are done
            failure = (jobs[index].name, exc)
            break
    if futures:
        failure = _wait(pool, started, jobs, futures, outcomes, failure)
    if failure is not None:
        name, exc = failure
        if isinstance(exc, FanoutError):
            raise exc
        raise _engine_failed(name, names, exc) from exc
    return jobs, [o[0] for o in outcomes], [o[1] for o in outcomes]


def _wait(pool, started, jobs, futures, outcomes, failure):
    """Wait for the workers, within the timeout; cancel the laggards.

    Returns the first failure as ``(engine name, exception)``, or None.  Never
    returns while a worker still uses one of the session's connections.
    """
    names = [j.name for j in jobs]
    deadline = None if pool.timeout is None else started + pool.timeout
    pending = set(futures)
    while pending and failure is None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, pending = wait(pending, timeout=left, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None and failure is None:
                failure = (jobs[futures[future]].name, exc)
            elif exc is None:
                outcomes[futures[future]] = future.result()
        if pending and deadline is not None and time.monotonic() >= deadline:
            slow = [jobs[futures[f]].name for f in pending]
            failure = (
                slow[0],
                FanoutTimeoutError(
                    f"fan-out read over engines {', '.join(names)}: "
                    f"{_and(slow)} did not answer within dbrouter.fanout_timeout="
                    f"{pool.timeout:g}s; the read was abandoned (no partial result)",
                    slow,
                ),
            )
    if pending:
        # a failure or a timeout: stop the others' queries, and wait until no
        # worker holds a connection, since the caller will roll them back
        for future in pending:
            if not future.cancel():
                _cancel_query(jobs[futures[future]].conn)
        wait(pending)
        for future in pending:
            if not future.cancelled() and future.exception() is None:
                outcomes[futures[future]] = future.result()
    return failure


def _cancel_query(conn):
    """Ask the database to cancel what *conn* is running (psycopg, psycopg2)."""
    try:
        dbapi_connection = conn.connection.dbapi_connection
    except Exception:  # noqa: BLE001 - invalidated or closed: nothing runs
        return
    cancel = getattr(dbapi_connection, "cancel_safe", None) or getattr(
        dbapi_connection, "cancel", None
    )
    if cancel is not None:
        try:
            cancel()
        except Exception:  # noqa: BLE001 - best effort; the wait below still holds
            pass


def _and(names):
    quoted = [repr(n) for n in names]
    shown = (
        quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
    )
    return f"engine {shown}" if len(quoted) == 1 else f"engines {shown}"


def _engine_failed(name, names, exc):
    error = FanoutEngineError(
        f"fan-out read over engines {', '.join(names)}: engine {name!r} failed, "
        f"so the whole read did (no partial result): {type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}",
        name,
    )
    if _retryable(exc):
        from pyramid_retry import mark_error_retryable

        mark_error_retryable(error)
    return error


def _retryable(exc):
    """Whether zope.sqlalchemy (and so pyramid_tm) would retry *exc*."""
    if not isinstance(exc, DBAPIError):
        return False
    from zope.sqlalchemy.datamanager import _retryable_errors

    return any(
        isinstance(exc.orig, kind) and (test is None or test(exc.orig))
        for kind, test in _retryable_errors
    )
