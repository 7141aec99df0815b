"""The router chain: Django's database-router protocol, checked at start-up.

A router is any object with one or more of::

    db_for_read(model, **hints)        -> name, list of names, or None
    db_for_write(model, **hints)       -> name, list of names (a bulk UPDATE
                                          or DELETE only), or None
    allow_relation(obj1, obj2, **hints) -> True, False, or None
    allow_migrate(db, model, **hints)   -> True, False, or None

Routers are asked in order and the first answer that is not ``None`` wins,
as in Django's ``ConnectionRouter``.  Unlike Django, a router that defines
none of the four methods, or a method whose name looks like one of them but
is misspelt (``db_for_reed``), is refused at start-up instead of being
silently skipped.

A list from ``db_for_write`` runs a bulk UPDATE or DELETE on each of those
engines in the session's transaction (:mod:`pyramid_dbrouter.bulk`); for a
new object or an INSERT it is a :class:`RouterAnswerError` before any SQL,
since a row is written to one engine.
"""

import difflib
from typing import Protocol

from sqlalchemy.sql.elements import TextClause

from .exceptions import ConfigurationError, RouterAnswerError

METHODS = ("db_for_read", "db_for_write", "allow_relation", "allow_migrate")


class Router(Protocol):
    """The router protocol, for plugin authors (every method is optional).

    Each method answers ``None`` for "no opinion": the next router is asked.
    Hints are keyword arguments, at least ``instance`` (the object being
    written or lazy-loaded from, or None), ``clause`` (the statement, or
    None) and ``request`` (the current request, or None); ``get()`` adds
    ``identity`` (the primary key looked up) to ``db_for_read``.
    """

    def db_for_read(self, model, **hints):
        """An engine name, a list of names (read each and merge: fan-out), or
        None.  *model* is the mapped class, None for textual SQL."""

    def db_for_write(self, model, **hints):
        """An engine name, or None; a list of names only for a bulk UPDATE or
        DELETE statement (the ``clause`` hint), which then runs on each of
        them in the session's transaction.  For a new object (the
        ``instance`` hint) or an INSERT, a list is a RouterAnswerError."""

    def allow_relation(self, obj1, obj2, **hints):
        """True, False, or None: whether two objects of different engines may
        be related (with every router abstaining: only on one engine)."""

    def allow_migrate(self, db, model, **hints):
        """True, False, or None: whether engine *db* holds *model*'s table
        (*model* is the Table where no class maps it; ``table`` hint)."""


_LOOKALIKE_PREFIXES = ("db_for", "dbfor", "db_fro", "allow", "alow")


def describe(router):
    return getattr(router, "__name__", None) or type(router).__name__


def check_router(router, source="router"):
    """Return *router* as an instance, or raise ConfigurationError naming *source*.

    A class is instantiated with no arguments, as Django does.
    """
    if isinstance(router, type):
        try:
            router = router()
        except TypeError as exc:
            raise ConfigurationError(
                f"{source}: cannot instantiate router class {router.__name__} "
                f"without arguments ({exc}); pass an instance instead"
            ) from None
    names = [n for n in dir(router) if not n.startswith("_")]
    for name in names:
        if name in METHODS:
            if not callable(getattr(router, name)):
                raise ConfigurationError(
                    f"{source}: {describe(router)}.{name} is not callable"
                )
            continue
        lowered = name.lower()
        close = difflib.get_close_matches(lowered, METHODS, n=1, cutoff=0.8)
        if close or lowered.startswith(_LOOKALIKE_PREFIXES):
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"{source}: {describe(router)} has a method {name!r} that is not "
                f"part of the router protocol ({', '.join(METHODS)}){hint}"
            )
    if not any(hasattr(router, m) for m in METHODS):
        raise ConfigurationError(
            f"{source}: {describe(router)} defines none of the router methods "
            f"{', '.join(METHODS)}"
        )
    return router


class RouterChain:
    """The routers of one application, asked in order.

    The bound methods are collected once, so that a chain whose routers have
    no opinion on reads costs one empty loop per statement.
    """

    def __init__(self, routers=()):
        self.routers = list(routers)
        self._read = self._collect("db_for_read")
        self._write = self._collect("db_for_write")
        self._relation = self._collect("allow_relation")
        self._migrate = self._collect("allow_migrate")

    def _collect(self, method):
        return [(r, getattr(r, method)) for r in self.routers if hasattr(r, method)]

    def __bool__(self):
        return bool(self.routers)

    def __len__(self):
        return len(self.routers)

    @property
    def has_write(self):
        return bool(self._write)

    # ``first_*``: the first answer that is not None, and the router that gave
    # it, or ``(None, None)`` -- routing.py prints which router decided

    def first_read(self, model, **hints):
        for router, method in self._read:
            answer = method(model, **hints)
            if answer is not None:
                return _check_name(answer, router, "db_for_read", many=True), router
        return None, None

    def first_write(self, model, **hints):
        for router, method in self._write:
            answer = method(model, **hints)
            if answer is not None:
                name = _check_name(answer, router, "db_for_write", many=True)
                if type(name) is list:
                    _check_bulk(name, router, model, hints)
                return name, router
        return None, None

    def first_migrate(self, db, model, **hints):
        for router, method in self._migrate:
            answer = method(db, model, **hints)
            if answer is not None:
                return _check_bool(answer, router, "allow_migrate"), router
        return None, None

    def db_for_read(self, model, **hints):
        """An engine name, a list of names (fan-out), or None (no opinion)."""
        return self.first_read(model, **hints)[0]

    def db_for_write(self, model, **hints):
        """An engine name, a list of names (a bulk UPDATE or DELETE on each),
        or None (no opinion)."""
        return self.first_write(model, **hints)[0]

    def allow_relation(self, obj1, obj2, **hints):
        for router, method in self._relation:
            answer = method(obj1, obj2, **hints)
            if answer is not None:
                return _check_bool(answer, router, "allow_relation")
        return None

    def allow_migrate(self, db, model, **hints):
        return self.first_migrate(db, model, **hints)[0]


def _check_name(answer, router, method, many):
    if isinstance(answer, str):
        return answer
    if many and isinstance(answer, list | tuple):
        names = list(dict.fromkeys(answer))
        if names and all(isinstance(n, str) for n in names):
            return names[0] if len(names) == 1 else names
    expected = "an engine name (str), a list of names, or None"
    if not many:
        expected = "an engine name (str) or None"
    raise RouterAnswerError(
        f"router {describe(router)}.{method} returned {answer!r}; expected {expected}"
    )


def _check_bulk(names, router, model, hints):
    """A list of engines is for a bulk UPDATE or DELETE: refuse it for
    anything that writes rows, which live in one place."""
    clause = hints.get("clause")
    instance = hints.get("instance")
    if (
        instance is None
        and clause is not None
        and (clause.is_update or clause.is_delete)
    ):
        return
    if instance is not None:
        what = f"a new {type(instance).__name__}"
    elif clause is None:
        what = f"a write of {_subject(model, None)} with no statement (get_bind)"
    elif clause.is_insert:
        what = f"an INSERT into {_subject(model, clause)}"
    elif isinstance(clause, TextClause):
        what = "textual SQL"
    else:
        what = f"a {type(clause).__name__} of {_subject(model, clause)}"
    raise RouterAnswerError(
        f"router {describe(router)}.db_for_write returned {names!r} for {what}; "
        "a list of engines is only for a bulk UPDATE or DELETE statement, which "
        "runs on each of them, while a row is written to one engine: answer one "
        "name (nothing was sent to any database)"
    )


def _subject(model, clause):
    if isinstance(model, type):
        return model.__name__
    name = getattr(getattr(clause, "table", None), "name", None)
    return f"table {name}" if name else "no model"


def _check_bool(answer, router, method):
    if isinstance(answer, bool):
        return answer
    raise RouterAnswerError(
        f"router {describe(router)}.{method} returned {answer!r}; "
        "expected True, False or None"
    )
