"""Which engine, and why: the one routing decision.

Every caller -- statements, ``get()``, new objects at flush, ``get_bind``,
``dbrouter show --explain`` and ``init_db`` -- asks here, so that the
precedence is written once::

    using_bind  >  __bind_key__ / Table.info["bind_key"]  >  routers
                >  (new objects) the objects they are related to  >  default

An answer is a :class:`Route`: the engine name (or a list of names, for a
fan-out read or a bulk UPDATE/DELETE run on each) and the rule that decided
it, which errors and explanations print (``unknown engine 'legacyy' (from
__bind_key__ of Invoice)``).

Objects that were loaded are not routed: they stay with the engine they came
from (the session keeps that in their identity).
"""

from .routers import describe
from .settings import DEFAULT

#: an execution option that pins one statement, as ``using_bind`` does
BIND_OPTION = "dbrouter_bind"

# the rules, in order of precedence
USING_BIND = "using_bind"
OPTION = "execution option"
BIND_KEY = "__bind_key__"
TABLE_BIND_KEY = 'Table.info["bind_key"]'
ROUTER = "router"
RELATED = "related"
LOADED = "loaded"
DEFAULT_RULE = "default"


class Route:
    """An engine name (or names) and the rule that chose it.

    *subject* is what the rule is about: the model of ``__bind_key__``, the
    Table of ``bind_key``, the router that answered, or the instance state a
    new object is related to.
    """

    __slots__ = ("name", "rule", "subject")

    def __init__(self, name, rule, subject=None):
        self.name = name
        self.rule = rule
        self.subject = subject

    def __repr__(self):
        return f"<Route {self.name!r} by {self.reason}>"

    def __eq__(self, other):
        if not isinstance(other, Route):
            return NotImplemented
        return (self.name, self.reason) == (other.name, other.reason)

    __hash__ = None

    @property
    def reason(self):
        """The rule, as errors and ``--explain`` print it."""
        rule, subject = self.rule, self.subject
        if rule == BIND_KEY:
            return f"__bind_key__ of {subject.__name__}"
        if rule == TABLE_BIND_KEY:
            return f'Table.info["bind_key"] of {subject.name}'
        if rule == ROUTER:
            return f"router {describe(subject)}"
        if rule == RELATED:
            return f"related to {_describe_state(subject)}"
        if rule == LOADED:
            return f"loaded from {self.name}"
        return rule

    def __str__(self):
        return self.reason


#: every router abstained, or there are none
DEFAULT_ROUTE = Route(DEFAULT, DEFAULT_RULE)


def _describe_state(state):
    identity = state.key[1] if state.key is not None else None
    if identity is None:
        identity = state.mapper.primary_key_from_instance(state.obj())
    shown = ",".join(str(v) for v in identity) if identity else "new"
    return f"{state.class_.__name__}#{shown}"


def bind_key_table(statement):
    """The Table a Core statement is about, if its ``info["bind_key"]`` names
    an engine (a reflected table, say); else None."""
    table = getattr(statement, "table", None)  # INSERT, UPDATE, DELETE
    if table is None and statement.is_select:
        froms = getattr(statement, "get_final_froms", None)
        tables = froms() if froms is not None else ()
        table = tables[0] if len(tables) == 1 else None
    info = getattr(table, "info", None)
    return table if info and info.get("bind_key") else None


def route(
    chain,
    model,
    write,
    *,
    pins=None,
    clause=None,
    instance=None,
    request=None,
    identity=None,
    session=None,
    default=DEFAULT_ROUTE,
):
    """Where a statement, a ``get()`` or a new object goes.

    *chain* is the :class:`~pyramid_dbrouter.routers.RouterChain`; *pins* the
    session's ``using_bind`` stack; *model* the mapped class (None for
    textual SQL or a Core statement, then *clause* is looked at);
    *instance*, *clause*, *request*, *session* and (reads) *identity* are
    the routers' hints.  *default* is what to answer when nothing decides
    (None for a new object, which then goes with the objects it is related
    to).
    """
    if pins:
        return Route(pins[-1], USING_BIND)
    if model is not None:
        key = getattr(model, "__bind_key__", None)
        if key is not None:
            return Route(key, BIND_KEY, model)
    elif clause is not None:
        table = bind_key_table(clause)
        if table is not None:
            return Route(table.info["bind_key"], TABLE_BIND_KEY, table)
    if chain:
        if write:
            answer, router = chain.first_write(
                model,
                instance=instance,
                clause=clause,
                request=request,
                session=session,
            )
        else:
            answer, router = chain.first_read(
                model,
                instance=instance,
                clause=clause,
                request=request,
                identity=identity,
                session=session,
            )
        if answer is not None:
            return Route(answer, ROUTER, router)
    return default


EVERY_ENGINE = "no router has an opinion: every engine"


def migration(chain, db, model, table):
    """Whether engine *db* holds *table*: ``(True or False, Route)``, the
    Route naming the rule (and, for a bind key, the engine it names).

    ``allow_migrate`` is asked with the mapped class, or the Table where no
    class maps it (an association table); when every router abstains, a
    table whose model has a ``__bind_key__`` (or whose ``info["bind_key"]``
    is set) lives only on that engine, and any other table everywhere.
    """
    answer, router = chain.first_migrate(db, model, table=table)
    if answer is not None:
        return answer, Route(db, ROUTER, router)
    key = getattr(model, "__bind_key__", None)
    if key is not None:
        return key == db, Route(key, BIND_KEY, model)
    key = table.info.get("bind_key")
    if key is not None:
        return key == db, Route(key, TABLE_BIND_KEY, table)
    return True, Route(db, EVERY_ENGINE)
