"""What the routing did in one request: each statement's engine and rule,
and how the request's transaction was committed.

``config.include("pyramid_dbrouter.trace")`` records, for every request that
uses ``request.dbsession``, a :class:`Trace` in
``request.environ["dbrouter.trace"]`` (:func:`request_trace`):

* each statement run on one of the session's connections, with the engine
  that answered, the rule that chose it (the core's
  :class:`~pyramid_dbrouter.routing.Route` reason: ``router TenantRouter``,
  ``__bind_key__ of Album``, ``loaded from tenant:alps``...), its SQL and
  its duration;
* once the request's transaction has finished, its :class:`Commit`: which
  engines wrote and the protocol used (``one-phase``, ``two-phase``, ``last
  resource``), with the transaction ids of prepared branches.

The last commits of the application are kept too (:func:`recent_commits`),
so that the page shown after a POST's redirect can tell how that POST
committed.  The debug-toolbar panel (:mod:`pyramid_dbrouter.debugtoolbar`)
and the demo's pages show these.

Tracing costs every statement a few listener calls: include it where
routing is being looked at (development, the demo), not in production.
It only observes: nothing it does changes where a statement goes.
"""

import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .datamanager import RoutingDataManager
from .internals import participants
from .writes import sql_writes

ENVIRON_KEY = "dbrouter.trace"
RECENT_KEY = "dbrouter.trace.recent"
#: how many commits :func:`recent_commits` remembers
RECENT = 20

# the protocols of Commit.protocol
NOTHING = "nothing written"
ONE_PHASE = "one-phase"
TWO_PHASE = "two-phase"
LAST_RESOURCE = "last resource"
ROLLED_BACK = "rolled back"


@dataclass
class Statement:
    """One statement as the database saw it."""

    engine: str
    rule: str
    sql: str
    duration_ms: float = 0.0
    writes: bool = False


@dataclass
class Commit:
    """How one request's transaction ended."""

    protocol: str
    writers: list = field(default_factory=list)
    prepared: list = field(default_factory=list)  # transaction ids
    decision_engine: str | None = None
    last_resource: str | None = None
    method: str = ""
    path: str = ""

    @property
    def summary(self):
        """One line, as the pages and the panel print it."""
        wrote = ", ".join(self.writers)
        if self.protocol == TWO_PHASE:
            return (
                f"two-phase commit: prepared {', '.join(self.prepared)}; "
                f"decision on {self.decision_engine}; committed"
            )
        if self.protocol == LAST_RESOURCE:
            return (
                f"last-resource commit: prepared {', '.join(self.prepared)}; "
                f"decision and commit in {self.last_resource} (no two-phase "
                "support), then the others committed"
            )
        if self.protocol == ONE_PHASE:
            return f"one-phase commit of {wrote}"
        if self.protocol == ROLLED_BACK:
            return f"rolled back{f' (wrote {wrote})' if wrote else ''}"
        return "nothing written: every engine rolled back"


class Trace:
    """The statements and the commit of one request (see the module)."""

    def __init__(self, request):
        self.request = weakref.ref(request)
        self.statements = []
        self.commit = None
        self._lock = threading.Lock()
        self._pending = None  # (Route, clause, model): the decision just taken
        self._current = None  # the reason of the ORM statement running
        self._flush = None  # {(engine, table name): {reasons}} while flushing
        self._transaction = None
        self._manager = None

    @property
    def writers(self):
        """The engines that ran a write, in the order they first did."""
        seen = []
        for statement in self.statements:
            if statement.writes and statement.engine not in seen:
                seen.append(statement.engine)
        return seen

    def rule_for(self, engine, context, sql=""):
        """The rule that sent the statement about to run on *engine* there."""
        if "dbrouter_decisions" in sql:
            return "commit: the decision, in the last resource's transaction"
        if self._flush is not None:
            return self._flush_rule(engine, context)
        if self._current is not None:
            return self._current
        pending = self._pending
        if pending is not None:
            # a statement run on the connections directly: a fan-out's parts
            name = pending[0].name
            if engine == name or (isinstance(name, list) and engine in name):
                return pending[0].reason
        return f"loaded from {engine}"

    def _flush_rule(self, engine, context):
        compiled = getattr(context, "compiled", None)
        table = getattr(getattr(compiled, "statement", None), "table", None)
        name = getattr(table, "name", None)
        reasons = self._flush.get((engine, name))
        if reasons:
            return "flush: " + "; ".join(sorted(reasons))
        if compiled is not None and compiled.isinsert:
            return f"flush: rows of {name} go with the objects they link"
        return f"flush: loaded from {engine}"


def request_trace(request):
    """The :class:`Trace` of *request*, or None (nothing routed yet, or
    tracing not included)."""
    return request.environ.get(ENVIRON_KEY)


def recent_commits(registry):
    """The application's last commits that wrote, newest first."""
    return list(reversed(registry.get(RECENT_KEY, ())))


# -- the listeners ---------------------------------------------------------------

#: the session's connections being traced: Connection -> (Trace, engine name)
_CONNECTIONS = weakref.WeakKeyDictionary()
_START = "dbrouter_trace_start"
_engine_listeners = threading.Lock()
_engine_listening = False


def _trace_of(session, create=False):
    request = session.info.get("request")
    if request is None:
        return None
    environ = request.environ
    trace = environ.get(ENVIRON_KEY)
    if trace is None and create:
        trace = environ[ENVIRON_KEY] = Trace(request)
    if trace is not None and create:
        _hook_transaction(trace, request, session)
    return trace


def _hook_transaction(trace, request, session):
    manager = getattr(request, "tm", None)
    if manager is None:
        return
    try:
        current = manager.get()
    except Exception:  # no transaction begun (explicit manager)
        return
    if trace._transaction is current:
        return
    trace._transaction = current
    current.addBeforeCommitHook(_before_commit, (trace, session, current))
    current.addAfterCommitHook(_after_commit, (trace,))


def _before_commit(trace, session, transaction):
    trace._pending = trace._current = None
    # the session's data manager, read again once it committed (it has left
    # the transaction by then)
    trace._manager = next(
        (
            r
            for r in participants(transaction)
            if isinstance(r, RoutingDataManager) and r.session is session
        ),
        None,
    )


def _after_commit(status, trace):
    writers = trace.writers
    manager, trace._manager = trace._manager, None
    prepared = [xid for _branch, xid in getattr(manager, "prepared", ())]
    last = getattr(manager, "last_resource", None)
    if not status:
        protocol = ROLLED_BACK
    elif prepared and last is not None:
        protocol = LAST_RESOURCE
    elif prepared:
        protocol = TWO_PHASE
    elif writers:
        protocol = ONE_PHASE
    else:
        protocol = NOTHING
    request = trace.request()
    commit = Commit(
        protocol,
        writers=writers,
        prepared=prepared,
        decision_engine=getattr(manager, "decision_engine", None),
        last_resource=last.name if last is not None else None,
        method=getattr(request, "method", ""),
        path=getattr(request, "path_qs", ""),
    )
    trace.commit = commit
    if request is not None and writers:
        recent = request.registry.get(RECENT_KEY)
        if recent is not None:
            recent.append(commit)


def _after_begin(session, transaction, connection):
    trace = _trace_of(session, create=True)
    if trace is not None:
        _CONNECTIONS[connection] = (trace, session.engines.name_of(connection.engine))


def _do_orm_execute(state):
    trace = _trace_of(state.session)
    if trace is None:
        return
    pending, trace._pending = trace._pending, None
    current = None
    if pending is not None and not state.is_relationship_load:
        routed, clause, model = pending
        if clause is state.statement or (
            clause is None
            and state.bind_mapper is not None
            and state.bind_mapper.class_ is model
        ):
            current = routed.reason
            several = isinstance(routed.name, list)
            if several and (clause is None or not state.is_select):
                # a get() trying the engines in turn, and a bulk write on
                # several engines, come here once per engine
                trace._pending = pending
    trace._current = current


def _before_flush(session, flush_context, instances):
    trace = _trace_of(session, create=True)
    if trace is None:
        return
    reasons = {}
    for obj in session.new:
        routed = session.route_of(obj)
        if routed is None:
            continue
        table = type(obj).__table__.name
        what = f"{type(obj).__name__} by {routed.reason}"
        reasons.setdefault((routed.name, table), set()).add(what)
    trace._flush = reasons
    trace._current = trace._pending = None


def _after_flush(session, flush_context):
    trace = _trace_of(session)
    if trace is not None:
        trace._flush = None


def _before_cursor_execute(conn, cursor, statement, parameters, context, many):
    if conn in _CONNECTIONS:
        conn.info[_START] = time.perf_counter()


def _after_cursor_execute(conn, cursor, statement, parameters, context, many):
    found = _CONNECTIONS.get(conn)
    if found is None:
        return
    trace, name = found
    start = conn.info.pop(_START, None)
    took = (time.perf_counter() - start) * 1000 if start is not None else 0.0
    entry = Statement(
        name,
        trace.rule_for(name, context, statement),
        statement,
        took,
        sql_writes(statement),
    )
    with trace._lock:
        trace.statements.append(entry)
    trace._current = None


def _traced_route(original):
    def _dbr_route(self, model, write, clause=None, identity=None):
        routed = original(self, model, write, clause=clause, identity=identity)
        trace = _trace_of(self, create=True)
        if trace is not None:
            trace._pending = (routed, clause, model)
        return routed

    _dbr_route.dbrouter_traced = True
    return _dbr_route


def trace_sessions(registry):
    """Trace the sessions of *registry*'s session factory (idempotent)."""
    global _engine_listening
    factory = registry["dbsession_factory"]
    cls = factory.class_  # the factory's own subclass: other apps untouched
    if getattr(cls._dbr_route, "dbrouter_traced", False):
        return
    # every decision of a statement or get() goes through _dbr_route
    cls._dbr_route = _traced_route(cls._dbr_route)
    event.listen(factory, "after_begin", _after_begin)
    event.listen(factory, "do_orm_execute", _do_orm_execute)
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "after_flush_postexec", _after_flush)
    registry[RECENT_KEY] = deque(maxlen=RECENT)
    with _engine_listeners:
        if not _engine_listening:
            # on the class: engines made later (tenants) are seen too; the
            # lookup in _CONNECTIONS keeps other connections out
            event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
            event.listen(Engine, "after_cursor_execute", _after_cursor_execute)
            _engine_listening = True


def includeme(config):
    """Trace every request's session (``request.environ["dbrouter.trace"]``)."""
    if not hasattr(config, "add_db_engine"):
        config.include("pyramid_dbrouter")
    # after pyramid_dbrouter's own "finish" action (order 10) configured the
    # session factory
    config.action(
        ("dbrouter", "trace"), lambda: trace_sessions(config.registry), order=20
    )
