"""Objects related across engines, at flush.

A new object that no rule routed goes with the objects it is related to
(Django's instance hint); objects of two engines may be related only where
a router's ``allow_relation`` says so; and engines whose rows others refer
to are flushed first.  Each walk looks only at relationships that hold a
value: most flushed objects have none loaded.
"""

import weakref

from sqlalchemy import inspect
from sqlalchemy.orm.interfaces import MANYTOONE, ONETOMANY

from .exceptions import CrossDatabaseRelationError
from .routing import DEFAULT_ROUTE, RELATED, Route
from .settings import DEFAULT


def state_engine(state):
    """The engine name of an instance state, or None for a new, unrouted one."""
    key = state.key
    if key is not None:
        return key[2] or DEFAULT
    return state.identity_token


_RELATIONSHIPS = weakref.WeakKeyDictionary()


def _relationships(mapper):
    """The mapper's relationships, as a tuple (walked for every flushed object)."""
    found = _RELATIONSHIPS.get(mapper)
    if found is None:
        found = _RELATIONSHIPS[mapper] = tuple(mapper.relationships)
    return found


_RELATIONSHIP_KEYS = weakref.WeakKeyDictionary()


def has_relations(state):
    """Whether any relationship of *state* holds a value (a C-level test:
    most flushed objects have none loaded)."""
    keys = _RELATIONSHIP_KEYS.get(state.mapper)
    if keys is None:
        keys = _RELATIONSHIP_KEYS[state.mapper] = frozenset(
            prop.key for prop in _relationships(state.mapper)
        )
    return bool(keys) and not keys.isdisjoint(state.dict)


def _related(state, prop):
    value = state.dict.get(prop.key)
    if value is None:
        return ()
    if prop.uselist:
        return list(value)
    return (value,)


def follow_relations(session, undecided, groups):
    """Django's instance hint: a new object nobody routed goes with the
    objects it is related to, in either direction; else to ``default``."""
    pending = set(undecided)
    if session._dbr_multi:
        # pending objects by the objects they point at, built once, so
        # that the walk below is linear in the relations
        pointing = {}
        known = [s for states in groups.values() for s in states]
        for state in undecided:
            for prop in _relationships(state.mapper):
                for other in _related(state, prop):
                    other_state = inspect(other)
                    pointing.setdefault(other_state, []).append(state)
                    if other_state not in pending and (
                        state_engine(other_state) is not None
                    ):
                        known.append(other_state)
        while known and pending:
            state = known.pop()
            name = state_engine(state) or DEFAULT
            neighbours = list(pointing.get(state, ()))
            for prop in _relationships(state.mapper):
                neighbours.extend(inspect(o) for o in _related(state, prop))
            for other_state in neighbours:
                if other_state in pending:
                    pending.discard(other_state)
                    routed = Route(name, RELATED, state)
                    session._dbr_assign(other_state, routed, groups)
                    known.append(other_state)
    for state in undecided:
        if state in pending:
            session._dbr_assign(state, DEFAULT_ROUTE, groups)


def check_relations(session, groups):
    for name, states in groups.items():
        for state in states:
            if not has_relations(state):
                continue
            for prop in _relationships(state.mapper):
                for other in _related(state, prop):
                    other_name = state_engine(inspect(other)) or DEFAULT
                    if other_name != name:
                        _allow_relation(session, state.obj(), name, other, other_name)


def _allow_relation(session, obj, name, other, other_name):
    allowed = session.routers.allow_relation(obj, other, **session._dbr_hints({}))
    if not allowed:
        why = "a router refused it" if allowed is False else "no router allowed it"
        raise CrossDatabaseRelationError(
            f"{type(obj).__name__} in engine {name!r} cannot be related to "
            f"{type(other).__name__} in engine {other_name!r}: {why} "
            "(allow_relation); relate objects of one engine, or add a router "
            "whose allow_relation returns True for them"
        )


def flush_order(groups):
    """Engines whose rows others refer to are flushed first."""
    where = {state: name for name, states in groups.items() for state in states}
    before = {name: set() for name in groups}
    for state, name in where.items():
        for prop in _relationships(state.mapper):
            if prop.direction not in (MANYTOONE, ONETOMANY):
                continue
            for other in _related(state, prop):
                other_name = where.get(inspect(other))
                if other_name is None or other_name == name:
                    continue
                if prop.direction is MANYTOONE:
                    before[name].add(other_name)
                else:
                    before[other_name].add(name)
    order = []
    while before:
        ready = sorted(n for n, deps in before.items() if not deps) or sorted(before)
        first = ready[0]
        order.append(first)
        del before[first]
        for deps in before.values():
            deps.discard(first)
    return order
