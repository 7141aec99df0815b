"""The Configurator directives, and the per-application state they fill.

Each directive checks its arguments when it is called, and registers a
``config.action`` whose discriminator names what it configures, so that two
engines or routers of the same name are a ``ConfigurationConflictError`` at
``config.commit()``, reported with the user's own file and line.  Engines
are created inside the actions (which never connects), never at import.
"""

from pyramid.config import PHASE1_CONFIG
from pyramid.path import DottedNameResolver

from .engines import EngineRegistry, engine_for_spec, parse_engine_argument
from .exceptions import ConfigurationError
from .fanout import configure_fanout
from .routers import RouterChain, check_router
from .settings import DEFAULT, ENGINE_NAME, check_engine_name, mask_url, parse_settings
from .transactions import get_session_factory
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


def _router_name(router):
    cls = router if isinstance(router, type) else type(router)
    return f"{cls.__module__}.{cls.__qualname__}"


def add_db_engine(config, name, url=None, *, engine=None, **engine_options):
    """Add the engine *name*, from a URL and ``engine_from_config`` options,
    or an Engine passed as ``engine=``.  Two engines of one name conflict."""
    check_engine_name(name, f"add_db_engine(name={name!r})")
    make = parse_engine_argument(name, url, engine, engine_options)
    shown = mask_url(engine.url if engine is not None else url)
    intr = config.introspectable(
        "dbrouter engines", name, f"{name} ({shown})", "dbrouter engine"
    )
    intr["name"] = name
    intr["url"] = shown

    def register():
        get_state(config.registry).engines.add(name, make())

    config.action(
        ("dbrouter-engine", name),
        register,
        order=PHASE1_CONFIG,
        introspectables=(intr,),
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
    state.factory = get_session_factory(state.engines, state.chain, state.policy)
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
    """A :class:`DBRouterState` made from settings alone, without a
    Configurator (for ``session_scope`` in scripts and threads)."""
    parsed = parse_settings(settings)
    state = DBRouterState(parsed)
    state.engines.settings = settings
    for name, spec in parsed.engines.items():
        state.engines.add(name, engine_for_spec(spec))
    resolver = DottedNameResolver()
    state.routers = [
        check_router(resolver.maybe_resolve(r), f"dbrouter.routers: {r}")
        for r in parsed.routers
    ]
    registry = {"dbrouter": state}
    return finish(_DictRegistry(registry))


class _DictRegistry(dict):
    settings = None
