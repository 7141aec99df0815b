"""``RoutingSession``: one SQLAlchemy session over many named engines.

Where a statement, a ``get()`` or a new object goes is decided by
:func:`pyramid_dbrouter.routing.route` (``using_bind`` > ``__bind_key__`` >
routers > the objects a new one is related to > ``default``), called from
the session's own methods rather than from a ``do_orm_execute`` listener
(which costs every statement a few per cent).

An object that was loaded stays with the engine it came from: its writes,
refreshes and lazy or eager loads go there, whatever is pinned.  The engine
is part of each object's identity through SQLAlchemy's ``identity_token``,
as in :mod:`sqlalchemy.ext.horizontal_shard`, except that objects of the
``default`` engine keep the plain token ``None``: the common case pays
nothing for identities it does not use.

Writes are flushed one engine at a time, each engine's objects with the
engine bound for the whole flush, so that rows of association tables go with
the objects they link and ORM bulk statements keep working (a per-object
``connection_callable`` would forbid them).
"""

import warnings

from sqlalchemy import inspect
from sqlalchemy.exc import NoResultFound, SADeprecationWarning
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import PassiveFlag
from sqlalchemy.util import EMPTY_DICT

from .binding import BoundSession
from .bulk import default_sync, dml_options, execute_bulk
from .exceptions import DBRouterError, RouterAnswerError
from .fanout import execute_fanout, identity_first
from .internals import (
    deleted_states,
    identity_lookup,
    is_clean,
    is_flushing,
    load_origin,
    modified_states,
    pending_states,
    propagate_attrs,
    session_execute,
    statement_options,
)
from .registration import session_changed
from .relations import (
    check_relations,
    flush_order,
    follow_relations,
    has_relations,
    state_engine,
)
from .routing import (
    BIND_KEY,
    BIND_OPTION,
    DEFAULT_ROUTE,
    LOADED,
    OPTION,
    ROUTER,
    USING_BIND,
    Route,
    route,
)
from .settings import DEFAULT
from .writes import statement_writes


def _token(name):
    return None if name == DEFAULT else name


def bind_of(obj):
    """The name of the engine *obj* belongs to.

    For an object that was loaded or flushed, the engine it came from; for a
    new object not yet flushed, the engine it was pinned to, or ``None``.
    """
    return state_engine(inspect(obj))


def _model_of(entity):
    if entity is None:
        return None
    if isinstance(entity, type):
        return entity
    mapper = getattr(entity, "mapper", None)
    if mapper is not None:
        return mapper.class_
    return getattr(entity, "class_", None)


def _statement_model(statement):
    return _model_of(propagate_attrs(statement).get("plugin_subject"))


class RoutingSession(Session):
    """A :class:`~sqlalchemy.orm.Session` whose binds are chosen by routers.

    Made by :func:`pyramid_dbrouter.get_session_factory`; ``engines`` is an
    :class:`~pyramid_dbrouter.engines.EngineRegistry` and ``routers`` a
    :class:`~pyramid_dbrouter.routers.RouterChain`.  The current request, if
    any, is ``session.info["request"]`` and is passed to routers as the
    ``request`` hint.
    """

    def __init__(
        self,
        *args,
        engines,
        routers,
        policy=None,
        zope_registration=None,
        fanout_unique=None,
        **kw,
    ):
        if engines is None:
            raise DBRouterError(
                "this session factory is not configured yet: its engines and "
                "routers are known once the configuration is committed "
                "(config.commit() or config.make_wsgi_app())"
            )
        super().__init__(*args, **kw)
        self._dbr_policy = policy
        #: the ``fanout_unique`` of every fan-out of this session, unless a
        #: statement says otherwise (``"first"``: a row in several engines
        #: is read once, the first engine's)
        self.fanout_unique = fanout_unique
        self.engines = engines
        self.routers = routers
        self._dbr_routed = bool(routers)
        self._dbr_multi = engines.is_multi()
        self._dbr_pins = []
        self._dbr_exec_bind = None
        self._dbr_flush_bind = None
        # state -> Route of the new objects the last flush routed (a plain
        # dict, renewed at each flush: cheaper than weak references)
        self._dbr_routes = None
        # (transaction manager, initial state, keep_session) of ``register``,
        # if any: writes we can see are marked changed on that manager, so
        # that they are never silently lost
        self._dbr_tm = zope_registration

    # -- choosing an engine --------------------------------------------------

    def engine(self, name, source=None):
        """The Engine named *name* (:class:`UnknownBindError` if none)."""
        return self.engines.get(name, source)

    def _dbr_hints(self, hints):
        hints.setdefault("request", self.info.get("request"))
        hints.setdefault("session", self)
        return hints

    def _dbr_route(self, model, write, clause=None, identity=None):
        """The :class:`~pyramid_dbrouter.routing.Route` of a statement or a
        ``get()``; *identity* is the primary key a ``get()`` looks up (the
        routers' ``identity`` hint)."""
        if self._dbr_pins:
            # route()'s first rule, inlined: every using_bind() call is pinned
            return Route(self._dbr_pins[-1], USING_BIND)
        if self._dbr_routed:
            return route(
                self.routers,
                model,
                write,
                pins=self._dbr_pins,
                clause=clause,
                request=self.info.get("request"),
                identity=identity,
                session=self,
            )
        return route(None, model, write, pins=self._dbr_pins, clause=clause)

    def route_of(self, obj):
        """Which engine *obj* belongs to, and by which rule: a
        :class:`~pyramid_dbrouter.routing.Route` (None for a new object that
        nothing pinned and no flush routed yet)."""
        state = inspect(obj)
        routed = self._dbr_routes.get(state) if self._dbr_routes else None
        if routed is not None:
            return routed
        if state.key is not None:
            return Route(state.key[2] or DEFAULT, LOADED)
        if state.identity_token is not None:
            return Route(state.identity_token, USING_BIND)
        return None

    def _dbr_inherited(self, statement, execution_options):
        """The engine a loader statement must use: its parent object's."""
        own = statement_options(statement)
        name = execution_options.get(BIND_OPTION) or own.get(BIND_OPTION)
        if name is not None:
            return name
        if own:
            # a subquery eager load carries its parent query's options: the
            # identity token of an engine, or none for ``default``
            token = own.get("identity_token")
            if token is not None:
                return token
            for key in own:
                if type(key) is tuple and key[0] == "orig_query":
                    return DEFAULT
        top = execution_options.get("sa_top_level_orm_context")
        if top is not None:
            bind = top.bind_arguments.get("bind")
            return DEFAULT if bind is None else self.engines.name_of(bind)
        options = execution_options.get("_sa_orm_load_options")
        if options is not None:
            state, token = load_origin(options)
            if state is not None:
                return state_engine(state) or DEFAULT
            return token
        return None

    def get_bind(self, mapper=None, *, clause=None, bind=None, **kw):
        if bind is not None:
            return bind
        if self._dbr_flush_bind is not None:
            return self._dbr_flush_bind
        if self._dbr_exec_bind is not None:
            return self._dbr_exec_bind
        # called directly (session.connection(), get_bind(Model)): route it
        write = clause is None or not clause.is_select
        model = _model_of(mapper) if mapper is not None else None
        if model is None and clause is not None:
            model = _statement_model(clause)
        routed = self._dbr_route(model, write, clause=clause)
        name = routed.name
        if isinstance(name, list):
            if write:
                raise RouterAnswerError(
                    f"{routed.reason} sends this bulk write to engines {name!r}, and "
                    "get_bind() (session.connection()) gives one engine: run the "
                    "statement with session.execute(), which runs it on each"
                )
            name = name[0]
        return self.engine(name, routed)

    # -- statements ------------------------------------------------------------

    def _execute_internal(
        self,
        statement,
        params=None,
        *,
        execution_options=EMPTY_DICT,
        bind_arguments=None,
        **kw,
    ):
        if bind_arguments and bind_arguments.get("bind") is not None:
            # ORM bulk UPDATE by primary key asks get_bind(mapper) for its
            # connection: the engine given, not the routers' answer
            result = self._dbr_execute_on(
                bind_arguments["bind"],
                statement,
                params,
                execution_options,
                bind_arguments,
                kw,
            )
            if self._dbr_tm is not None and statement_writes(statement):
                self._dbr_mark_changed()
            return result
        if not hasattr(statement, "_propagate_attrs"):
            # not a statement: let SQLAlchemy raise its own error
            return session_execute(
                self, statement, params, execution_options=execution_options, **kw
            )
        is_select = statement.is_select
        writes = not is_select and statement_writes(statement)
        name = routed = None
        if execution_options or statement_options(statement):
            name = self._dbr_inherited(statement, execution_options)
        if name is None:
            subject = propagate_attrs(statement).get("plugin_subject")
            model = subject.class_ if subject is not None else None
            routed = self._dbr_route(model, not is_select, statement)
            name = routed.name
        if isinstance(name, list):
            if is_select:
                return execute_fanout(
                    self, name, statement, params, execution_options, bind_arguments, kw
                )
            # db_for_write answers a list only for an UPDATE or a DELETE
            return execute_bulk(
                self,
                name,
                routed,
                statement,
                params,
                execution_options,
                bind_arguments,
                kw,
            )
        engine = self.engines._static.get(name) or self.engine(
            name, routed or Route(name, OPTION)
        )
        # a replica's objects take its primary's identity (None: default's)
        token = self.engines.identity_token(name) if name != DEFAULT else None
        if name != DEFAULT:
            bind_arguments = dict(bind_arguments or ())
            bind_arguments["bind"] = engine
            if token is not None:
                execution_options = dict(execution_options)
                execution_options["identity_token"] = token
                if writes and statement.is_dml:
                    execution_options = dml_options(statement, execution_options, token)
        if (
            token is None
            and writes
            and self._dbr_multi
            and (statement.is_update or statement.is_delete)
        ):
            execution_options = default_sync(self, statement, execution_options)
        result = self._dbr_execute_on(
            engine, statement, params, execution_options, bind_arguments, kw
        )
        if writes and self._dbr_tm is not None:
            self._dbr_mark_changed()
        return result

    def _dbr_execute_on(
        self, engine, statement, params, execution_options, bind_arguments, kw
    ):
        """SQLAlchemy's execution, with ``get_bind`` answering *engine* to
        whatever the ORM asks during it (a bulk UPDATE's connection, say)."""
        previous, self._dbr_exec_bind = self._dbr_exec_bind, engine
        try:
            return session_execute(
                self,
                statement,
                params,
                execution_options=execution_options,
                bind_arguments=bind_arguments,
                **kw,
            )
        finally:
            self._dbr_exec_bind = previous

    def _dbr_mark_changed(self):
        """Tell the transaction manager this session has work to commit:
        without it, a write the session saw would be rolled back."""
        session_changed(self)

    # The bulk methods write through the session's connections without a
    # statement of ours or a flush event: mark them here, or they are lost.

    def bulk_save_objects(self, objects, *args, **kw):
        super().bulk_save_objects(objects, *args, **kw)
        if self._dbr_tm is not None:
            self._dbr_mark_changed()

    def bulk_insert_mappings(self, mapper, mappings, *args, **kw):
        super().bulk_insert_mappings(mapper, mappings, *args, **kw)
        if self._dbr_tm is not None:
            self._dbr_mark_changed()

    def bulk_update_mappings(self, mapper, mappings):
        super().bulk_update_mappings(mapper, mappings)
        if self._dbr_tm is not None:
            self._dbr_mark_changed()

    def _identity_lookup(
        self,
        mapper,
        primary_key_identity,
        identity_token=None,
        passive=PassiveFlag.PASSIVE_OFF,
        lazy_loaded_from=None,
        execution_options=EMPTY_DICT,
        bind_arguments=None,
    ):
        # a many-to-one lazy load looks in its parent's engine's identities
        if identity_token is None and lazy_loaded_from is not None:
            identity_token = _token(state_engine(lazy_loaded_from) or DEFAULT)
        return identity_lookup(
            self,
            mapper,
            primary_key_identity,
            identity_token,
            passive,
            lazy_loaded_from,
            execution_options,
            bind_arguments,
        )

    def get(self, entity, ident, *, identity_token=None, bind_arguments=None, **kw):
        if identity_token is not None or (
            bind_arguments and bind_arguments.get("bind") is not None
        ):
            return super().get(
                entity,
                ident,
                identity_token=identity_token,
                bind_arguments=bind_arguments,
                **kw,
            )
        routed = self._dbr_route(_model_of(entity), False, identity=ident)
        name = routed.name
        names = name if isinstance(name, list) else (name,)
        if (
            len(names) > 1
            and not kw.get("populate_existing")
            and kw.get("with_for_update") is None
        ):
            # over a fan-out, an object already loaded from any of the engines
            # is returned with no SQL, as Session.get() would
            found = identity_first(self, entity, ident, names)
            if found is not None:
                return found
        # then the engines in order and the first hit
        for each in names:
            found = super().get(
                entity,
                ident,
                identity_token=self.engines.identity_token(each),
                bind_arguments={"bind": self.engine(each, routed)},
                **kw,
            )
            if found is not None:
                return found
        return None

    def get_one(self, entity, ident, **kw):
        found = self.get(entity, ident, **kw)
        if found is None:
            raise NoResultFound("No row was found when one was required")
        return found

    # -- pinning -----------------------------------------------------------------

    def using_bind(self, name):
        """Pin the engine *name*: a handle, and a context manager.

        ``session.using_bind("archive").scalars(stmt)`` runs one statement
        there; ``with session.using_bind("archive"):`` pins every statement,
        ``get()`` and new object inside the block.  Objects that were loaded
        keep their own engine.  The session is the same, and so is its
        transaction.
        """
        self.engine(name, "using_bind")
        return BoundSession(self, name)

    def add(self, instance, _warn=True):
        if self._dbr_pins:
            state = inspect(instance)
            if state.key is None:
                state.identity_token = self._dbr_pins[-1]
        super().add(instance, _warn=_warn)

    # -- flushing ------------------------------------------------------------------

    def flush(self, objects=None):
        if is_flushing(self):
            return super().flush(objects)  # raises: already flushing
        if is_clean(self):
            return
        groups = self._dbr_plan_flush(objects)
        if len(groups) <= 1:
            name = next(iter(groups), DEFAULT)
            # every name was checked when its objects were routed
            self._dbr_flush_bind = self.engine(name)
            try:
                super().flush(objects)
            finally:
                self._dbr_flush_bind = None
            return
        for name in flush_order(groups):
            self._dbr_flush_bind = self.engine(name)
            try:
                with warnings.catch_warnings():
                    # flush(objects) is deprecated in SQLAlchemy 2.1, but it is
                    # the one way to flush each engine's objects, association
                    # rows included, with that engine bound
                    warnings.simplefilter("ignore", SADeprecationWarning)
                    super().flush([state.obj() for state in groups[name]])
            finally:
                self._dbr_flush_bind = None

    def _dbr_plan_flush(self, objects):
        """Route every object to be flushed; return ``{engine: [states]}``."""
        only = None
        if objects is not None:
            only = {inspect(o) for o in objects}
        groups = {}
        undecided = []
        self._dbr_routes = {}
        for state in list(pending_states(self)):
            if only is not None and state not in only:
                continue
            pin = state.identity_token
            if pin is not None:
                routed = Route(pin, USING_BIND)
            else:
                routed = self._dbr_route_new(state)
            if routed is None:
                undecided.append(state)
            else:
                self._dbr_assign(state, routed, groups)
        for state in (*deleted_states(self), *modified_states(self)):
            if state.key is None or (only is not None and state not in only):
                continue
            groups.setdefault(state.key[2] or DEFAULT, []).append(state)
        related = None
        if self._dbr_multi:
            related = [s for states in groups.values() for s in states]
            related += undecided
            related = [s for s in related if has_relations(s)]
        if undecided:
            if related:
                follow_relations(self, undecided, groups)
            else:
                for state in undecided:
                    self._dbr_assign(state, DEFAULT_ROUTE, groups)
        if related:
            check_relations(self, groups)
        return groups

    def _dbr_assign(self, state, routed, groups):
        # a replica's writes go to its primary
        name = self.engines.primary_of(routed.name)
        self.engine(routed.name, routed)
        state.identity_token = _token(name)
        groups.setdefault(name, []).append(state)
        self._dbr_routes[state] = routed

    def _dbr_route_new(self, state):
        """``__bind_key__``, then routers; None when all abstain (the
        precedence of routing.route, inlined: it runs for every new object)."""
        model = state.class_
        key = getattr(model, "__bind_key__", None)
        if key is not None:
            return Route(key, BIND_KEY, model)
        if not self.routers.has_write:
            return None
        answer, router = self.routers.first_write(
            model,
            instance=state.obj(),
            clause=None,
            request=self.info.get("request"),
            session=self,
        )
        return None if answer is None else Route(answer, ROUTER, router)
