"""Reading from several engines at once, merged as if one database answered.

When ``db_for_read`` answers a list of names, the statement runs on each
engine **in parallel**, each on that engine's connection of the session's
transaction.  Only the database conversation happens in the worker threads:
the statement is prepared, and objects are built, in the caller's thread,
because a Session is not thread-safe.

Rows are then merged honouring ``ORDER BY`` (on selected columns or on
attributes of selected entities), ``LIMIT`` and ``OFFSET``: each engine is
asked for ``LIMIT + OFFSET`` rows without offset, the sorted union is cut
as one database would.  What cannot be merged exactly -- aggregates,
``DISTINCT``, ``GROUP BY``, ``HAVING``, compound selects, ``ORDER BY`` on
something that is not selected -- raises :class:`FanoutError` before any
SQL runs, unless the statement asks for ``execution_options(fanout="concat")``:
each engine's rows in turn, in the order the router named the engines.

``execution_options(fanout_unique="first")`` (on the statement, the call or
the session) keeps one row per identity: a row whose mapped objects have the
primary keys of a row of an engine named earlier is dropped, so the first
engine's copy wins (a row being moved from one engine to another, seen in
both).  Rows without mapped objects are kept.  Exact with ``LIMIT`` when the
copies agree on the ``ORDER BY`` columns.
"""

from sqlalchemy import inspect
from sqlalchemy.engine.cursor import FullyBufferedCursorFetchStrategy
from sqlalchemy.exc import CompileError
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.base import CompileState
from sqlalchemy.sql.elements import Label, UnaryExpression
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Select
from sqlalchemy.util import immutabledict

from .exceptions import FanoutError
from .settings import DEFAULT

MODES = ("merge", "concat")
#: ``fanout_unique``: which engine's copy of a row found in several is kept
UNIQUE = ("first",)
AGGREGATES = frozenset(
    "count sum avg min max every bool_and bool_or array_agg string_agg "
    "group_concat json_agg jsonb_agg stddev variance percentile_cont "
    "percentile_disc mode rank dense_rank".split()
)
# databases that sort NULL above every value (NULLS LAST for ASC)
_NULLS_HIGH = frozenset({"postgresql", "oracle"})


def execute_fanout(
    session, names, statement, params, execution_options, bind_arguments, kw
):
    """Run *statement* on the engines *names*; return one merged Result."""
    options = statement._execution_options.union(execution_options)
    mode = options.get("fanout", "merge")
    if mode not in MODES:
        raise FanoutError(
            f"execution option fanout={mode!r} is not one of {', '.join(MODES)}"
        )
    unique = options.get("fanout_unique") or session.execution_options.get(
        "fanout_unique"
    )
    if unique is not None and unique not in UNIQUE:
        raise FanoutError(
            f"execution option fanout_unique={unique!r} is not one of "
            f"{', '.join(UNIQUE)} (or None)"
        )
    engines = [(name, session.engine(name, "a router")) for name in names]
    plan = None
    if mode == "merge":
        plan = MergePlan(statement, engines[0][1].dialect.name, names)
        statement = plan.statement
    jobs = _prepare(
        session, engines, statement, params, execution_options, bind_arguments
    )
    results = _run_parallel(session, jobs)
    if mode == "concat":
        merged = results[0].merge(*results[1:])
    else:
        merged = plan.merge(results, unique=unique)
    return merged.scalar() if kw.get("_scalar_result") else merged


def _prepare(session, engines, statement, params, execution_options, bind_arguments):
    """Begin each engine's part of the transaction and prepare its statement,
    in this thread: both touch the session."""
    orm = statement._propagate_attrs.get("compile_state_plugin", None) == "orm"
    compile_state_cls = (
        CompileState._get_plugin_class_for_plugin(statement, "orm") if orm else None
    )
    if session.execution_options:
        execution_options = session.execution_options.union(execution_options)
    jobs = []
    for name, engine in engines:
        # immutable, as Session.execute hands them on: the ORM calls .union()
        options = immutabledict(execution_options)
        if name != DEFAULT:
            options = options.union({"identity_token": name})
        binds = dict(bind_arguments or ())
        binds["bind"] = engine
        stmt, stmt_params = statement, params
        if compile_state_cls is not None:
            stmt, options, stmt_params = compile_state_cls.orm_pre_session_exec(
                session, statement, params, options, binds, False
            )
        else:
            binds.setdefault("clause", statement)
            session._autoflush()
        conn = session._connection_for_bind(engine)
        jobs.append((compile_state_cls, conn, stmt, stmt_params, options, binds))
    return jobs


def _fetch(conn, statement, params, options):
    """In a worker thread: execute, and read every row off the cursor."""
    result = conn.execute(statement, params or {}, execution_options=options)
    if not result.returns_rows:
        return result
    # as CursorResult.splice_vertically does: a clone holding the rows
    buffered = result._generate()
    rows = list(result._raw_row_iterator())
    buffered.cursor_strategy = FullyBufferedCursorFetchStrategy(
        None, initial_buffer=rows
    )
    buffered._reset_memoizations()
    return buffered


def _run_parallel(session, jobs):
    pool = session.engines.executor()
    futures = [
        pool.submit(_fetch, conn, stmt, stmt_params, options)
        for _cls, conn, stmt, stmt_params, options, _binds in jobs[1:]
    ]
    # the caller's thread reads the first engine meanwhile, and waits for
    # every engine before raising, so that no worker still uses a connection
    # when the caller rolls back
    _cls, conn, stmt, stmt_params, options, _binds = jobs[0]
    outcomes = []
    try:
        outcomes.append((_fetch(conn, stmt, stmt_params, options), None))
    except BaseException as exc:  # noqa: BLE001 - re-raised below
        outcomes.append((None, exc))
    for future in futures:
        try:
            outcomes.append((future.result(), None))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            outcomes.append((None, exc))
    for _result, error in outcomes:
        if error is not None:
            raise error
    results = []
    for (cls, _conn, stmt, stmt_params, options, binds), (cursor, _) in zip(
        jobs, outcomes, strict=True
    ):
        if cls is None:
            results.append(cursor)
        else:
            results.append(
                cls.orm_setup_cursor_result(
                    session, stmt, stmt_params, options, binds, cursor
                )
            )
    return results


class MergePlan:
    """How to merge one SELECT's rows from several engines, or why not."""

    def __init__(self, statement, dialect_name, names):
        self.names = names
        self.original = statement
        if not isinstance(statement, Select):
            self._refuse(statement, f"a {type(statement).__name__} cannot be merged")
        if statement._distinct or statement._distinct_on:
            self._refuse(statement, "DISTINCT")
        if statement._group_by_clauses:
            self._refuse(statement, "GROUP BY")
        if statement._having_criteria:
            self._refuse(statement, "HAVING")
        for column in statement.selected_columns:
            for element in visitors.iterate(column):
                if isinstance(element, FunctionElement) and (
                    getattr(element, "name", "").lower() in AGGREGATES
                ):
                    self._refuse(statement, f"the aggregate {element.name}()")
        try:
            self.limit = statement._limit
            self.offset = statement._offset or 0
        except CompileError:
            self._refuse(statement, "a LIMIT or OFFSET that is not a plain integer")
        if self.offset:
            # each engine gives the rows up to the end of the page
            if self.limit is not None:
                statement = statement.limit(self.limit + self.offset)
            statement = statement.offset(None)
        self.statement = statement
        nulls_high = dialect_name in _NULLS_HIGH
        self.keys = [
            self._sort_key(clause, nulls_high) for clause in statement._order_by_clauses
        ]

    def _refuse(self, statement, what):
        raise FanoutError(
            f"cannot merge {what} read from engines {', '.join(self.names)}: one "
            "database holding all the rows would answer differently; run it on "
            "one engine with using_bind(), or ask for each engine's rows in turn "
            "with .execution_options(fanout='concat')"
        )

    def _sort_key(self, clause, nulls_high):
        descending, nulls_first = False, None
        element = clause
        while isinstance(element, UnaryExpression) and element.modifier in (
            operators.desc_op,
            operators.asc_op,
            operators.nulls_first_op,
            operators.nulls_last_op,
        ):
            if element.modifier is operators.desc_op:
                descending = True
            elif element.modifier is operators.nulls_first_op:
                nulls_first = True
            elif element.modifier is operators.nulls_last_op:
                nulls_first = False
            element = element.element
        element = (
            getattr(element, "element", element) if _is_label_ref(element) else element
        )
        if nulls_first is None:
            nulls_first = nulls_high == descending
        getter = self._getter(element)
        if getter is None:
            self._refuse(
                self.original,
                f"ORDER BY {element} (it is not a selected column or attribute)",
            )
        return getter, descending, nulls_first

    def _getter(self, element):
        base = _base_column(element)
        descriptions = self.original.column_descriptions
        for index, description in enumerate(descriptions):
            expr = description.get("expr")
            if expr is None or _is_entity(expr):
                continue
            column = (
                expr.__clause_element__()
                if hasattr(expr, "__clause_element__")
                else expr
            )
            if _base_column(column) is base or (
                isinstance(element, Label | str)
                and description.get("name") == getattr(element, "name", element)
            ):
                return _item(index)
        annotations = getattr(element, "_annotations", {})
        owner = annotations.get("parententity")
        for index, description in enumerate(descriptions):
            expr = description.get("expr")
            if expr is None or not _is_entity(expr):
                continue
            mapper = inspect(description["entity"]).mapper
            try:
                prop = mapper.get_property_by_column(base)
            except Exception:
                prop = None
            if prop is None and owner is not None and "proxy_key" in annotations:
                if owner.mapper.isa(mapper) or mapper.isa(owner.mapper):
                    return _attribute(index, annotations["proxy_key"])
            if prop is not None:
                return _attribute(index, prop.key)
        return None

    def merge(self, results, unique=None):
        frozen = [result.freeze() for result in results]
        scalars = frozen[0]._source_supports_scalars
        if unique == "first":
            rows = _first_per_identity([each.data for each in frozen], scalars)
        else:
            rows = [row for each in frozen for row in each.data]
        # one stable sort per key, the least significant first: the engines'
        # sorted lists, concatenated in the router's order, end up merged as
        # one database would have sorted them.  NULLs are ranked by a tuple,
        # so that no Python comparison function runs per pair.
        for getter, descending, nulls_first in reversed(self.keys):
            if scalars:
                getter = _scalar_getter(getter)
            null_rank = 0 if nulls_first != descending else 2
            rows.sort(key=_null_ranked(getter, null_rank), reverse=descending)
        stop = None if self.limit is None else self.offset + self.limit
        rows = rows[self.offset : stop]
        if scalars:
            rows = [[row] for row in rows]
        return frozen[0].with_new_rows(rows)()


def _identity(value):
    """``(class, primary key)`` of a mapped object, else None."""
    state = inspect(value, raiseerr=False)
    key = getattr(state, "key", None) if getattr(state, "is_instance", 0) else None
    return None if key is None else key[:2]


def _first_per_identity(engines_rows, scalars):
    """The rows of each engine in turn, less those whose mapped objects'
    identities an engine named earlier returned (``fanout_unique="first"``)."""
    seen, kept = set(), []
    for rows in engines_rows:
        mine = set()
        for row in rows:
            values = (row,) if scalars else row
            key = tuple(filter(None, map(_identity, values))) or None
            if key is not None:
                if key in seen:
                    continue
                mine.add(key)
            kept.append(row)
        seen |= mine
    return kept


def _null_ranked(getter, null_rank):
    def key(row):
        value = getter(row)
        return (null_rank, 0) if value is None else (1, value)

    return key


def _is_label_ref(element):
    return type(element).__name__ in ("_label_reference", "_textual_label_reference")


def _is_entity(expr):
    try:
        insp = inspect(expr)
    except Exception:
        return False
    return getattr(insp, "is_mapper", False) or getattr(insp, "is_aliased_class", False)


def _base_column(element):
    if isinstance(element, Label):
        element = element.element
    deannotate = getattr(element, "_deannotate", None)
    return deannotate() if deannotate is not None else element


def _item(index):
    return lambda row: row[index]


def _attribute(index, key):
    return lambda row: getattr(row[index], key)


def _scalar_getter(getter):
    return lambda value: getter((value,))
