"""Merging aggregates read from several engines, exactly.

``COUNT``, ``SUM``, ``MIN`` and ``MAX`` of each engine's groups combine into
the union's: counts and sums add up (a sum of nothing but NULLs stays NULL),
minima and maxima are taken again.  ``AVG`` cannot be averaged again: each
engine is asked for ``SUM`` and ``COUNT`` of the same argument instead, and
the average is their quotient (a float where the database gives one, as
SQLite does; else a ``Decimal`` of 28 significant digits).

Each engine runs the statement without ``HAVING``, ``ORDER BY``, ``LIMIT``
and ``OFFSET``, with the ``GROUP BY`` keys it does not select (and the
aggregates ``HAVING`` or ``ORDER BY`` use) as extra columns; groups are
merged by their key (NULL keys forming one group, as in SQL), then
``HAVING`` is evaluated with SQL's three-valued logic, ``DISTINCT`` applies
to the selected columns, and the rows are sorted and cut.  Memory holds one
row per group.

What cannot be merged this way is refused, naming it, before any SQL:
``COUNT(DISTINCT ...)`` (each engine's distinct values may overlap), other
aggregates (``string_agg``, ``array_agg``, percentiles...), window functions,
``WITHIN GROUP`` and ``FILTER``, a selected column that is neither grouped
nor aggregated, an expression over an aggregate, and a ``HAVING`` this
module cannot evaluate (anything but comparisons, ``AND``/``OR``/``NOT``,
``IS [NOT] NULL``, ``+``, ``-``, ``*`` of literals, keys and aggregates).
"""

import operator
from decimal import Decimal

from sqlalchemy import func
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    False_,
    FunctionFilter,
    Grouping,
    Label,
    Null,
    Over,
    True_,
    UnaryExpression,
    WithinGroup,
)
from sqlalchemy.sql.functions import FunctionElement

from .fanout_merge import (
    _NULLS_HIGH,
    _is_entity,
    limits,
    materialized,
    order_terms,
    refuse,
    sort_key,
)
from .internals import (
    clear_having_and_distinct,
    group_by,
    having,
    is_distinct,
    order_by,
    raw_rows,
)

MERGEABLE = frozenset({"count", "sum", "min", "max", "avg"})
#: aggregates that cannot be merged exactly from each engine's answer
AGGREGATES = MERGEABLE | frozenset(
    "every bool_and bool_or array_agg string_agg group_concat json_agg "
    "jsonb_agg json_object_agg jsonb_object_agg xmlagg stddev stddev_pop "
    "stddev_samp variance var_pop var_samp percentile_cont percentile_disc "
    "mode rank dense_rank percent_rank cume_dist median total "
    "bit_and bit_or".split()
)

_COMPARE = {
    operators.eq: operator.eq,
    operators.ne: operator.ne,
    operators.lt: operator.lt,
    operators.le: operator.le,
    operators.gt: operator.gt,
    operators.ge: operator.ge,
    operators.add: operator.add,
    operators.sub: operator.sub,
    operators.mul: operator.mul,
}


def _name(fn):
    return (getattr(fn, "name", None) or type(fn).__name__).lower()


def is_aggregate(statement, names):
    """Whether *statement* aggregates; FanoutError for what never merges."""
    found = bool(group_by(statement) or having(statement))
    elements = [*statement.selected_columns, *order_by(statement)]
    for column in elements:
        for element in visitors.iterate(column):
            if isinstance(element, Over):
                refuse(
                    statement,
                    names,
                    f"the window function {_name(element.element)}() OVER (...)",
                )
            if isinstance(element, WithinGroup):
                refuse(
                    statement, names, f"{_name(element.element)}() WITHIN GROUP (...)"
                )
            if isinstance(element, FunctionFilter):
                refuse(statement, names, f"{_name(element.func)}() FILTER (WHERE ...)")
            if isinstance(element, FunctionElement) and _name(element) in AGGREGATES:
                found = True
    return found


def _unwrap(element):
    while isinstance(element, Label | Grouping):
        element = element.element
    return element


def _distinct_argument(fn):
    return any(
        isinstance(arg, UnaryExpression) and arg.operator is operators.distinct_op
        for arg in fn.clauses
    )


class _Slot:
    """One column of each engine's rows: a group key or a partial aggregate."""

    __slots__ = ("kind", "source", "count_index")

    def __init__(self, kind, source, count_index=None):
        self.kind = kind
        self.source = source
        self.count_index = count_index


class AggregatePlan:
    def __init__(self, statement, dialect_name, names):
        self.names = names
        self.original = statement
        self.dialect_name = dialect_name
        self.limit, self.offset = limits(statement, names)
        self.distinct = bool(is_distinct(statement))
        for description in statement.column_descriptions:
            expr = description.get("expr")
            if expr is not None and _is_entity(expr):
                refuse(
                    statement,
                    names,
                    f"the entity {description.get('name')} with an aggregate or "
                    "GROUP BY (select its columns)",
                )
        self.groups = [_unwrap(g) for g in group_by(statement)]
        self.slots = []
        self.columns = []
        self.keys = {}  # visible column names, for textual ORDER BY
        for index, column in enumerate(statement.selected_columns):
            self.keys[getattr(column, "key", None) or f"_{index}"] = index
            self._visible(column)
        self.visible = len(self.slots)
        for group in self.groups:
            if self._find(group) is None:
                self._add(_Slot("key", group), group)
        self.having = None
        if having(statement):
            criteria = [self._compile(c) for c in having(statement)]
            self.having = criteria[0] if len(criteria) == 1 else _and(criteria)
        nulls_high = dialect_name in _NULLS_HIGH
        self.getters = []
        for clause in order_by(statement):
            element, descending, nulls_first = order_terms(clause)
            index = self._order_index(element)
            if nulls_first is None:
                nulls_first = nulls_high == descending
            self.getters.append((_item(index), descending, nulls_first))
        # the counts that AVG needs come last, after every other column
        for slot in list(self.slots):
            if slot.kind == "avg":
                arguments = slot.source.clauses.clauses
                slot.count_index = len(self.slots)
                self._add(_Slot("count", None), func.count(*arguments))
        per_engine = statement.with_only_columns(
            *self.columns, maintain_column_froms=True
        )
        per_engine = per_engine.order_by(None).limit(None).offset(None)
        # a private copy made by with_only_columns(): HAVING and DISTINCT
        # apply to the merged groups, not to each engine's
        clear_having_and_distinct(per_engine)
        self.statement = per_engine

    # -- building the columns each engine returns ---------------------------------

    def _add(self, slot, column):
        self.slots.append(slot)
        self.columns.append(column)
        return len(self.slots) - 1

    def _find(self, element):
        element = _unwrap(element)
        for index, slot in enumerate(self.slots):
            if slot.source is not None and (
                slot.source is element or slot.source.compare(element)
            ):
                return index
        return None

    def _visible(self, column):
        element = _unwrap(column)
        if isinstance(element, FunctionElement) and _name(element) in AGGREGATES:
            self._aggregate(element, column)
            return
        for inner in visitors.iterate(element):
            if isinstance(inner, FunctionElement) and _name(inner) in AGGREGATES:
                self._refuse(f"the expression {element} over an aggregate")
        if not any(element.compare(group) for group in self.groups):
            self._refuse(f"the column {element}, neither grouped nor aggregated")
        self._add(_Slot("key", element), column)

    def _aggregate(self, fn, column):
        kind = _name(fn)
        if kind not in MERGEABLE:
            self._refuse(f"the aggregate {fn.name}()")
        if _distinct_argument(fn):
            self._refuse(f"{fn.name.upper()}(DISTINCT ...)")
        if kind == "avg":
            # each engine's SUM, under the name the AVG column has
            name = column.name if isinstance(column, Label) else fn.name
            column = func.sum(*fn.clauses.clauses).label(name)
        return self._add(_Slot(kind, fn), column)

    def _hidden(self, element):
        index = self._find(element)
        if index is not None:
            return index
        element = _unwrap(element)
        if isinstance(element, FunctionElement) and _name(element) in AGGREGATES:
            return self._aggregate(element, element)
        if any(element.compare(group) for group in self.groups):
            return self._add(_Slot("key", element), element)
        return None

    def _order_index(self, element):
        if (
            isinstance(element, str)
            or type(element).__name__ == "_textual_label_reference"
        ):
            name = getattr(element, "element", element)
            if name in self.keys:
                return self.keys[name]
        if isinstance(element, Label) and element.name in self.keys:
            return self.keys[element.name]
        index = self._hidden(element)
        if index is None:
            self._refuse(f"ORDER BY {element}, neither grouped nor aggregated")
        return index

    def _refuse(self, what):
        refuse(self.original, self.names, what)

    # -- HAVING, evaluated on the merged groups -----------------------------------

    def _compile(self, element):
        """A function of a merged row giving the value of *element*, with
        SQL's NULL semantics (None is unknown)."""
        element = _unwrap(element)
        if isinstance(element, BindParameter):
            value = element.effective_value
            return lambda row: value
        if isinstance(element, Null):
            return lambda row: None
        if isinstance(element, True_ | False_):
            value = isinstance(element, True_)
            return lambda row: value
        if isinstance(element, BooleanClauseList) and element.operator in (
            operators.and_,
            operators.or_,
        ):
            parts = [self._compile(c) for c in element.clauses]
            return _and(parts) if element.operator is operators.and_ else _or(parts)
        if isinstance(element, UnaryExpression) and element.operator is operators.inv:
            inner = self._compile(element.element)
            return lambda row: _not(inner(row))
        if isinstance(element, BinaryExpression):
            return self._binary(element)
        index = self._hidden(element)
        if index is None:
            self._refuse(f"HAVING {element}")
        return _item(index)

    def _binary(self, element):
        op = element.operator
        if op in (operators.is_, operators.is_not) and isinstance(element.right, Null):
            left = self._compile(element.left)
            if op is operators.is_:
                return lambda row: left(row) is None
            return lambda row: left(row) is not None
        if op not in _COMPARE:
            self._refuse(f"HAVING with the operator {getattr(op, '__name__', op)}")
        left, right = self._compile(element.left), self._compile(element.right)
        apply = _COMPARE[op]

        def binary(row):
            a, b = left(row), right(row)
            return None if a is None or b is None else apply(a, b)

        return binary

    # -- merging ------------------------------------------------------------------

    def merge(self, results):
        key_indexes = [i for i, s in enumerate(self.slots) if s.kind == "key"]
        combine = [
            (i, _COMBINE[s.kind]) for i, s in enumerate(self.slots) if s.kind != "key"
        ]
        groups = {}
        for result in results:
            for raw in raw_rows(result):
                key = tuple([raw[i] for i in key_indexes])
                merged = groups.get(key)
                if merged is None:
                    groups[key] = list(raw)
                else:
                    for i, add in combine:
                        merged[i] = add(merged[i], raw[i])
        averages = [
            (i, s.count_index) for i, s in enumerate(self.slots) if s.kind == "avg"
        ]
        rows = list(groups.values())
        for row in rows:
            for i, count_index in averages:
                row[i] = self._average(row[i], row[count_index])
        if self.having is not None:
            rows = [row for row in rows if self.having(row) is True]
        if self.distinct:
            seen, unique = set(), []
            for row in rows:
                visible = tuple(row[: self.visible])
                if visible not in seen:
                    seen.add(visible)
                    unique.append(row)
            rows = unique
        if self.getters:
            rows.sort(key=sort_key(self.getters))
        if self.offset or self.limit is not None:
            stop = None if self.limit is None else self.offset + self.limit
            rows = rows[self.offset : stop]
        return materialized(results, [tuple(row) for row in rows], self.visible)

    def _average(self, total, count):
        if total is None or not count:
            return None
        if isinstance(total, float) or self.dialect_name == "sqlite":
            return total / count
        return Decimal(total) / Decimal(count)


def _add_counts(a, b):
    return (a or 0) + (b or 0)


def _add_sums(a, b):
    return b if a is None else a if b is None else a + b


def _least(a, b):
    return b if a is None else a if b is None else min(a, b)


def _greatest(a, b):
    return b if a is None else a if b is None else max(a, b)


_COMBINE = {
    "count": _add_counts,
    "sum": _add_sums,
    "avg": _add_sums,  # the column holds each engine's SUM until the end
    "min": _least,
    "max": _greatest,
}


def _and(parts):
    def both(row):
        unknown = False
        for part in parts:
            value = part(row)
            if value is None:
                unknown = True
            elif not value:
                return False
        return None if unknown else True

    return both


def _or(parts):
    def either(row):
        unknown = False
        for part in parts:
            value = part(row)
            if value is None:
                unknown = True
            elif value:
                return True
        return None if unknown else False

    return either


def _not(value):
    return None if value is None else not value


def _item(index):
    return lambda row: row[index]
