"""The Configurator directives, and the per-application state they fill.

Each directive checks its arguments when it is called, and registers a
``config.action`` whose discriminator names what it configures, so that two
engines or routers of the same name are a ``ConfigurationConflictError`` at
``config.commit()``, reported with the user's own file and line.  Engines
are created inside the actions (which never connects), never at import.
"""

from pyramid.config import PHASE1_CONFIG
from pyramid.path import DottedNameResolver

from .engines import EngineRegistry, engine_spec, make_engine
from .exceptions import ConfigurationError
from .factory import get_session_factory
from .fanout import configure_fanout
from .masking import mask_url
from .routers import RouterChain, check_router
from .settings import DEFAULT, ENGINE_NAME, check_engine_name, parse_settings
from .twophase import TwoPhasePolicy

#: after every engine and router action (order 0 is Pyramid's default)
PHASE_FINISH = 10


class DBRouterState:
    """What one application configured: engines, routers, session factory."""

    def __init__(self, settings):
        self.settings = settings
        self.engines = EngineRegistry(settings.max_dynamic_engines)
        self.routers = []
        self.chain = None
        self.factory = None
        self.metadata = None
        self.policy = None


def get_state(registry):
    """The application's :class:`DBRouterState` (made on first use)."""
    state = registry.get("dbrouter")
    if state is None:
        state = DBRouterState(parse_settings(registry.settings or {}))
        state.engines.settings = registry.settings or {}
        registry["dbrouter"] = state
    return state


def get_engines(registry):
    """``{name: Engine}`` for each configured (static) engine, ``default`` first."""
    return dict(get_state(registry).engines.static_items())


def dispose_engine(registry, name):
    """Close and forget the engine *name* made by an engine factory
    (``PREFIX:KEY``), e.g. before its database or folder is removed or moved;
    the next use makes it anew.  Returns whether it was open."""
    return get_state(registry).engines.discard(name)


def find_router(context, router_class):
    """The first router of *router_class* an application consults, from a
    session, a request or a registry; None if it has none (or before the
    configuration is committed).  Plugins find their own state this way."""
    routers = getattr(context, "routers", None)  # a RoutingSession's chain
    if routers is None:
        registry = getattr(context, "registry", context)
        state = registry.get("dbrouter") if hasattr(registry, "get") else None
        routers = state.chain if state is not None else None
    for router in getattr(routers, "routers", ()):
        if isinstance(router, router_class):
            return router
    return None


def _router_name(router):
    cls = router if isinstance(router, type) else type(router)
    return f"{cls.__module__}.{cls.__qualname__}"


def add_db_engine(
    config, name, url=None, *, engine=None, replica_of=None, **engine_options
):
    """Add the engine *name*, from a URL and ``engine_from_config`` options,
    or an Engine passed as ``engine=``.  Two engines of one name conflict.
    ``replica_of="default"`` declares it a replica (see :func:`add_db_replica`)."""
    check_engine_name(name, f"add_db_engine(name={name!r})")
    if replica_of is not None:
        config.add_db_replica(name, replica_of=replica_of)
    spec = engine_spec(name, url, engine, engine_options)
    shown = mask_url(engine.url if engine is not None else url)
    intr = config.introspectable(
        "dbrouter engines", name, f"{name} ({shown})", "dbrouter engine"
    )
    intr["name"] = name
    intr["url"] = shown

    def register():
        get_state(config.registry).engines.add(name, make_engine(spec))

    config.action(
        ("dbrouter-engine", name),
        register,
        order=PHASE1_CONFIG,
        introspectables=(intr,),
    )


def add_db_replica(config, name, *, replica_of):
    """Declare the engine *name* a replica of the engine *replica_of*.

    A replica holds its primary's rows, so its objects are its primary's:
    they share the primary's identity (``bind_of`` names the primary), their
    writes and deletes go to the primary, and their lazy loads and refreshes
    are read from the primary.  Which statements read from a replica is a
    router's choice (dbrouter_replica).  Declared twice, it conflicts.
    """
    source = f"add_db_replica({name!r}, replica_of={replica_of!r})"
    check_engine_name(name, source)
    check_engine_name(replica_of, source)
    if name == replica_of:
        raise ConfigurationError(f"{source}: an engine cannot be its own replica")
    intr = config.introspectable(
        "dbrouter replicas",
        name,
        f"{name} (replica of {replica_of})",
        "dbrouter replica",
    )
    intr["name"] = name
    intr["replica_of"] = replica_of

    def register():
        get_state(config.registry).engines.set_replica_of(name, replica_of)

    config.action(
        ("dbrouter-replica", name),
        register,
        order=PHASE1_CONFIG,
        introspectables=(intr,),
    )


def _check_replicas(engines, known):
    for name, primary in engines.replicas.items():
        for each in (name, primary):
            if each not in known:
                raise ConfigurationError(
                    f"add_db_replica({name!r}, replica_of={primary!r}): {each!r} is "
                    f"not a configured engine; configured engines: {', '.join(known)}"
                )
        if primary in engines.replicas:
            raise ConfigurationError(
                f"add_db_replica({name!r}, replica_of={primary!r}): {primary!r} is "
                f"itself a replica of {engines.replicas[primary]!r}; name the primary"
            )


def add_db_router(config, router, *, name=None):
    """Add a router (an object, a class or a dotted name), consulted after
    those added before it.  Adding one router twice conflicts."""
    source = f"add_db_router({router!r})"
    router = check_router(config.maybe_dotted(router), source)
    name = name or _router_name(router)
    intr = config.introspectable("dbrouter routers", name, name, "dbrouter router")
    intr["router"] = router

    def register():
        get_state(config.registry).routers.append(router)

    config.action(
        ("dbrouter-router", name),
        register,
        order=PHASE1_CONFIG,
        introspectables=(intr,),
    )


def add_db_engine_factory(config, prefix, factory):
    """Engines named ``PREFIX:KEY`` are made on first use by
    ``factory(key, settings)``, which returns a URL or an Engine; at most
    ``dbrouter.max_dynamic_engines`` of them stay open (least recently used
    first out)."""
    if not isinstance(prefix, str) or not ENGINE_NAME.match(prefix):
        raise ConfigurationError(
            f"add_db_engine_factory: {prefix!r} is not a valid prefix; use letters, "
            "digits, '_' and '-'"
        )
    factory = config.maybe_dotted(factory)
    if not callable(factory):
        raise ConfigurationError(
            f"add_db_engine_factory({prefix!r}): {factory!r} is not callable"
        )
    intr = config.introspectable(
        "dbrouter engine factories", prefix, f"{prefix}:KEY", "dbrouter engine factory"
    )

    def register():
        get_state(config.registry).engines.add_factory(prefix, factory)

    config.action(
        ("dbrouter-engine-factory", prefix),
        register,
        order=PHASE1_CONFIG,
        introspectables=(intr,),
    )


def finish(registry):
    """After every engine and router: check, then make the session factory."""
    state = get_state(registry)
    known = state.engines.names()
    if DEFAULT not in known:
        raise ConfigurationError(
            f"sqlalchemy.url is required: no engine is named {DEFAULT!r}"
        )
    if state.settings.coordinator not in known:
        raise ConfigurationError(
            f"dbrouter.coordinator: {state.settings.coordinator!r} is not a configured "
            f"engine; configured engines: {', '.join(known)}"
        )
    _check_replicas(state.engines, known)
    if state.settings.metadata:
        state.metadata = resolve_metadata(state.settings.metadata)
    state.chain = RouterChain(state.routers)
    state.policy = TwoPhasePolicy(
        state.engines,
        mode=state.settings.twophase,
        coordinator=state.settings.coordinator,
        prefix=state.settings.xid_prefix,
    )
    configure_fanout(
        state.engines,
        workers=state.settings.fanout_workers,
        timeout=state.settings.fanout_timeout,
        parallel=state.settings.fanout_parallel,
    )
    state.factory = get_session_factory(
        state.engines, state.chain, state.policy, factory=state.factory
    )
    registry["dbsession_factory"] = state.factory
    return state


def resolve_metadata(dotted):
    try:
        target = DottedNameResolver().maybe_resolve(dotted)
    except (ImportError, ValueError) as exc:
        raise ConfigurationError(f"dbrouter.metadata: cannot import {dotted!r}: {exc}")
    metadata = getattr(target, "metadata", target)
    if not hasattr(metadata, "sorted_tables"):
        raise ConfigurationError(
            f"dbrouter.metadata: {dotted!r} is neither a MetaData "
            "nor a declarative base"
        )
    return metadata


def build_from_settings(settings):
    """The :class:`DBRouterState` of *settings*, configured the one way an
    application is: a Configurator including pyramid_dbrouter (and the
    ``pyramid.includes`` of the settings: plugins), committed."""
    from pyramid.config import Configurator  # a script's, not an app's

    config = Configurator(settings=dict(settings))
    config.include("pyramid_dbrouter")
    config.commit()
    return get_state(config.registry)
