"""Merging the rows of one SELECT read from several engines, exactly.

A plan is made for each statement before any SQL runs, and says how each
engine's answer is merged so that the result is the one a single database
holding every row would give -- or raises :class:`FanoutError` naming the
construct that cannot be merged so.

Plain rows (this module):

* ``ORDER BY`` on selected columns, or on attributes of selected entities:
  each engine's rows arrive sorted, and a streaming k-way merge
  (:func:`heapq.merge`) interleaves them; nothing is materialised, so
  ``yield_per`` streams.
* ``LIMIT`` and ``OFFSET`` are pushed down: each engine is asked for at most
  ``OFFSET + LIMIT`` rows, without offset; the merged stream is cut as one
  database would cut it.  Such a bounded read is merged on the raw rows,
  before the ORM builds anything: only the rows kept become objects.
* ``DISTINCT`` on the selected columns: each engine's rows are distinct, and
  the merge drops a row already given by another engine.

``COUNT``, ``SUM``, ``MIN``, ``MAX``, ``AVG``, ``GROUP BY`` and ``HAVING``
are merged by :mod:`pyramid_dbrouter.fanout_aggregate`.
"""

import heapq
import itertools
import operator

from sqlalchemy import inspect
from sqlalchemy.engine.result import IteratorResult, MergedResult
from sqlalchemy.exc import CompileError
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import Label, UnaryExpression

from .exceptions import FanoutError
from .internals import (
    clone_result,
    copy_result_attributes,
    fetchall_raw,
    is_distinct,
    limit_of,
    offset_of,
    order_by,
    raw_rows,
    reset_memoizations,
    result_metadata,
    serve_buffered,
    soft_close,
    supports_scalars,
    with_options,
)

# databases that sort NULL above every value (NULLS LAST for ASC)
_NULLS_HIGH = frozenset({"postgresql", "oracle"})


_ORDERINGS = {}
_CACHE_SIZE = 500


def refuse(statement, names, what):
    raise FanoutError(
        f"cannot merge {what} read from engines {', '.join(names)}: one "
        "database holding all the rows would answer differently; run it on "
        "one engine with using_bind(), or ask for each engine's rows in turn "
        "with .execution_options(fanout='concat')"
    )


def limits(statement, names):
    """``(limit, offset)`` of *statement*, plain integers (limit may be None)."""
    try:
        return limit_of(statement), offset_of(statement) or 0
    except CompileError:
        refuse(statement, names, "a LIMIT or OFFSET that is not a plain integer")


def order_terms(clause):
    """``(element, descending, nulls_first or None)`` of one ORDER BY clause."""
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
    if _is_label_ref(element):
        element = getattr(element, "element", element)
    return element, descending, nulls_first


class _Descending:
    """A value that sorts in reverse (for a descending key in a k-way merge)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return other.value < self.value

    def __eq__(self, other):
        return self.value == other.value


def sort_key(getters):
    """A key function over raw rows from ``[(getter, descending, nulls_first)]``.

    NULLs are ranked by the first item of a tuple (below or above every
    value), so that no Python comparison function runs per pair.
    """
    parts = []
    for getter, descending, nulls_first in getters:
        null = (0,) if nulls_first else (2,)
        wrap = _Descending if descending else None
        parts.append((getter, null, wrap))
    if len(parts) == 1:
        getter, null, wrap = parts[0]
        if wrap is None:

            def key(row):
                value = getter(row)
                return null if value is None else (1, value)

        else:

            def key(row):
                value = getter(row)
                return null if value is None else (1, wrap(value))

        return key

    def key(row):
        out = []
        for getter, null, wrap in parts:
            value = getter(row)
            if value is None:
                out.append(null)
            else:
                out.append((1, value if wrap is None else wrap(value)))
        return out

    return key


class Ordering:
    """How a statement's rows sort: its ORDER BY, resolved once per statement
    shape (a plan's cacheable part)."""

    def __init__(self, statement, dialect_name, names):
        nulls_high = dialect_name in _NULLS_HIGH
        self.keys = []  # (getter over ORM rows, element, descending, nulls first)
        for clause in order_by(statement):
            element, descending, nulls_first = order_terms(clause)
            if nulls_first is None:
                nulls_first = nulls_high == descending
            getter = _getter(statement, element)
            if getter is None:
                refuse(
                    statement,
                    names,
                    f"ORDER BY {element} (it is not a selected column or attribute)",
                )
            self.keys.append((getter, element, descending, nulls_first))
        self._raw = None  # (cursor metadata, raw getters), the last ones made
        # raw rows can be merged before any object is built when each row is
        # one result row: no loader option or joined eager load adds rows
        self.raw_ok = not with_options(statement) and not any(
            _joins_eagerly(d.get("entity"))
            for d in statement.column_descriptions
            if _is_entity(d.get("expr"))
        )

    def raw_getters(self, cursor):
        """Getters over *cursor*'s raw rows, or None if a key is not there."""
        metadata = getattr(cursor, "_metadata", None)
        cached = self._raw
        if cached is not None and cached[0] is metadata:
            # SQLAlchemy keeps one metadata per compiled statement
            return cached[1]
        getters = self._raw_getters(metadata)
        self._raw = (metadata, getters)
        return getters

    def _raw_getters(self, metadata):
        index_for_key = getattr(metadata, "_index_for_key", None)
        if index_for_key is None:
            return None
        getters = []
        for _getter, element, descending, nulls_first in self.keys:
            try:
                index = index_for_key(_base_column(element), False)
                if index is None and isinstance(element, Label):
                    index = index_for_key(element.name, False)
            except Exception:  # noqa: BLE001 - ambiguous: use the objects
                return None
            if index is None:
                return None
            getters.append((_item(index), descending, nulls_first, index))
        return getters


def _sort_raw(rows, getters):
    """Each engine's raw rows, sorted together: ``[(engine index, row)]``.

    A few rows each, all in memory: one C sort (stable, so ties keep the
    router's order of engines) rather than a k-way merge in Python; when the
    keys share one direction and hold no NULL, with a C key function.
    """
    flat = [row for each in rows for row in each]
    directions = {descending for _g, descending, _n, _i in getters}
    if len(directions) == 1 and flat:
        key = operator.itemgetter(*[index for _g, _d, _n, index in getters])
        values = list(map(key, flat))
        if len(getters) == 1:
            has_null = None in values
        else:
            has_null = any(None in value for value in values)
        if not has_null:
            origin = {id(row): i for i, each in enumerate(rows) for row in each}
            flat.sort(key=key, reverse=directions.pop())
            return [(origin[id(row)], row) for row in flat]
    tagged = [(i, row) for i, each in enumerate(rows) for row in each]
    tagged.sort(key=sort_key([(_second(g), d, n) for g, d, n, _i in getters]))
    return tagged


class RowsPlan:
    """Rows (no aggregate): a k-way merge honouring ORDER BY, LIMIT, OFFSET
    and DISTINCT, streaming when the read is not bounded by a LIMIT."""

    def __init__(self, statement, names, ordering):
        self.names = names
        self.ordering = ordering
        self.limit, self.offset = limits(statement, names)
        self.distinct = bool(is_distinct(statement))
        if self.offset and self.limit is not None:
            # each engine gives the rows up to the end of the page
            statement = statement.limit(self.limit + self.offset).offset(None)
        elif self.offset:
            statement = statement.offset(None)
        self.statement = statement
        #: at most OFFSET + LIMIT rows per engine: read them at once
        self.bounded = self.limit is not None and ordering.raw_ok

    def merge_raw(self, cursors, rows):
        """Merge each engine's raw rows (a bounded read) before any object is
        built; return ``[(engine index, buffered cursor)]`` for the engines
        some of whose rows were kept, holding only those rows, and the index
        in that list of each merged row, in order.  None if the cursors'
        columns do not give the keys (then :meth:`merge` builds objects)."""
        getters = self.ordering.raw_getters(cursors[0]) if self.ordering.keys else []
        if getters is None:
            return None
        if getters:
            merged = _sort_raw(rows, getters)
        else:
            merged = [(i, row) for i, each in enumerate(rows) for row in each]
        if self.distinct:
            merged = _unique(merged, lambda pair: pair[1])
        stop = self.offset + self.limit
        picks = list(itertools.islice(merged, stop))
        kept = [[] for _ in cursors]
        for i, row in picks[self.offset :]:
            kept[i].append(row)
        order = [i for i, _row in picks[self.offset :]]
        # engines none of whose rows were kept build no objects at all
        used = [i for i, rows in enumerate(kept) if rows] or [0]
        renumber = {old: new for new, old in enumerate(used)}
        order = [renumber[i] for i in order]
        return [(i, buffered(cursors[i], kept[i])) for i in used], order

    def merge(self, results, order=None, unique=None, groups=None):
        if order is not None:
            streams = [raw_rows(r) for r in results]
            return StreamedResult(results, (next(streams[i]) for i in order))
        scalars = supports_scalars(results[0])
        streams = [raw_rows(result) for result in results]
        if unique is not None:
            kept = first_per_identity(streams, scalars, groups)
            streams = [iter(rows) for rows in kept]
        if self.ordering.keys:
            getters = [
                (_scalar(getter) if scalars else getter, descending, nulls_first)
                for getter, _element, descending, nulls_first in self.ordering.keys
            ]
            rows = heapq.merge(*streams, key=sort_key(getters))
        else:
            rows = itertools.chain.from_iterable(streams)
        if self.distinct:
            rows = _unique(rows)
        if self.offset or self.limit is not None:
            stop = None if self.limit is None else self.offset + self.limit
            rows = itertools.islice(rows, self.offset, stop)
        return StreamedResult(results, rows)


def _getter(statement, element):
    """A getter of *element*'s value from the statement's result rows."""
    base = _base_column(element)
    descriptions = statement.column_descriptions
    for index, description in enumerate(descriptions):
        expr = description.get("expr")
        if expr is None or _is_entity(expr):
            continue
        column = (
            expr.__clause_element__() if hasattr(expr, "__clause_element__") else expr
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


def _joins_eagerly(entity):
    if entity is None:
        return False
    mapper = inspect(entity).mapper
    return any(r.lazy in ("joined", False) for r in mapper.relationships)


def buffered(cursor, rows):
    """A clone of *cursor* holding *rows* (as ``CursorResult.splice_vertically``
    makes one): the ORM builds objects from it as from the cursor."""
    clone = clone_result(cursor)
    serve_buffered(clone, rows)
    reset_memoizations(clone)
    return clone


def fetch_raw(cursor):
    """Every raw row of *cursor* (bounded reads), before any processing."""
    if not cursor.returns_rows:
        return []
    return fetchall_raw(cursor)


class StreamedResult(MergedResult):
    """One Result over several engines' Results, its rows given by an
    iterator over their raw rows (read lazily, in the caller's thread)."""

    def __init__(self, results, rows):
        super().__init__(result_metadata(results[0]), results)
        self.iterator = rows


def materialized(results, rows, visible=None):
    """A Result of *rows* (raw rows shaped as *results*' rows), keeping only
    the first *visible* columns."""
    result = IteratorResult(result_metadata(results[0]), iter(rows))
    copy_result_attributes(result, results[0])
    for each in results:
        soft_close(each)
    if visible is not None and visible < len(result_metadata(results[0]).keys):
        result = result.columns(*range(visible))
    return result


def _identity(value):
    """``(class, primary key)`` of a mapped object, else None."""
    state = inspect(value, raiseerr=False)
    key = getattr(state, "key", None) if getattr(state, "is_instance", 0) else None
    return None if key is None else key[:2]


def first_per_identity(engines_rows, scalars, groups=None):
    """Each engine's rows, less those whose mapped objects' identities an
    engine named earlier returned (``fanout_unique="first"``: a row being
    moved from one engine to another, seen in both, is returned once, as the
    first engine has it).  With *groups* (one per engine), only engines of
    the same group are compared.  Repeats within one engine, and rows
    without mapped objects, are kept."""
    seen_by_group, kept = {}, []
    for index, rows in enumerate(engines_rows):
        group = groups[index] if groups is not None else None
        seen = seen_by_group.setdefault(group, set())
        mine, keep = set(), []
        for row in rows:
            values = (row,) if scalars else row
            key = tuple(filter(None, map(_identity, values))) or None
            if key is not None:
                if key in seen:
                    continue
                mine.add(key)
            keep.append(row)
        kept.append(keep)
        seen |= mine
    return kept


def _unique(rows, key=None):
    seen = set()
    for row in rows:
        value = row if key is None else key(row)
        if value not in seen:
            seen.add(value)
            yield row


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


def _second(getter):
    return lambda pair: getter(pair[1])


def _scalar(getter):
    return lambda value: getter((value,))
