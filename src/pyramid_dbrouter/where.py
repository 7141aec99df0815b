"""What a statement's WHERE pins a column to, for router authors.

A router that sends reads to the engines holding the rows (shards by user
id, tenants by key...) needs the values a ``WHERE`` compares one column
with.  :func:`where_values` answers that, so that no router walks SQLAlchemy
expressions itself: a copied traversal depends on SQLAlchemy's internals
and silently finds nothing when they change.

Only what is certain counts.  ``column == value``, ``value == column`` and
``column.in_(values)`` pin a column; ``AND`` keeps the values its parts
agree on, ``OR`` the values of all its branches when every branch pins the
column.  Anything else -- another operator, a parameter given only at
execution, a subquery -- is *unknown*, and the answer is ``None``: read
everywhere.
"""

from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnElement,
    Grouping,
)

from .internals import where_criteria

__all__ = ["where_values"]

_UNKNOWN = None


def where_values(clause, column):
    """The values *clause*'s WHERE pins *column* to, or ``None`` if unknown.

    *clause* is a statement (``select``, ``update``, ``delete``, as routers
    receive it in the ``clause`` hint) or a WHERE expression; *column* a
    ``Column`` or a mapped attribute (``User.user_id``).  Returns a
    ``frozenset`` of values; an empty set means no row can match
    (``user_id == 1 AND user_id == 2``).  Aliases of the column's table
    count as the column.
    """
    if clause is None:
        return _UNKNOWN
    if not isinstance(column, ColumnElement):  # a mapped attribute
        column = column.__clause_element__()
    criteria = where_criteria(clause)
    if criteria is not None:
        if not criteria:
            return _UNKNOWN
        if len(criteria) == 1:
            return _values(criteria[0], column)
        return _and(criteria, column)
    if not hasattr(clause, "get_children"):
        return _UNKNOWN
    return _values(clause, column)


def _values(element, column):
    while isinstance(element, Grouping):
        element = element.element
    if isinstance(element, BooleanClauseList):
        return _combine(element, column)
    if isinstance(element, BinaryExpression):
        return _comparison(element, column)
    return _UNKNOWN


def _combine(element, column):
    if element.operator is operators.and_:
        return _and(element.clauses, column)
    found = [_values(each, column) for each in element.clauses]
    if element.operator is operators.or_:
        if not found or any(each is None for each in found):
            return _UNKNOWN
        return frozenset.union(*found)
    return _UNKNOWN


def _and(clauses, column):
    found = [_values(each, column) for each in clauses]
    known = [each for each in found if each is not None]
    if not known:
        return _UNKNOWN
    return frozenset.intersection(*known)


def _is_column(element, column):
    if element is column:
        return True
    # a bound value is never the column (and its proxy_set is not cached)
    if isinstance(element, BindParameter):
        return False
    return getattr(element, "proxy_set", None) is not None and column.shares_lineage(
        element
    )


def _comparison(element, column):
    left, right, operator = element.left, element.right, element.operator
    if operator is operators.eq:
        if _is_column(right, column) and not _is_column(left, column):
            left, right = right, left
        if _is_column(left, column):
            value = _bound(right)
            return _UNKNOWN if value is _UNKNOWN else frozenset((value,))
        return _UNKNOWN
    if operator is operators.in_op and _is_column(left, column):
        while isinstance(right, Grouping):
            right = right.element
        if isinstance(right, BindParameter) and right.expanding:
            values = right.effective_value
            if values is None:
                return _UNKNOWN
            return frozenset(values)
        clauses = getattr(right, "clauses", None)
        if clauses is not None:
            values = [_bound(each) for each in clauses]
            if any(value is _UNKNOWN for value in values):
                return _UNKNOWN
            return frozenset(values)
    return _UNKNOWN


def _bound(element):
    """The value of a bound parameter known now, else unknown."""
    if not isinstance(element, BindParameter) or element.expanding:
        return _UNKNOWN
    value = element.effective_value
    # a bindparam("x") with no value is filled in at execution: unknown here
    return _UNKNOWN if value is None else value
