"""``config.add_db_shards``: the directive, and :func:`get_shards`.

It has Pyramid's shape: arguments are checked when it is called; the
router is added through the core's ``add_db_router``; what needs the
engines (are the shards configured engines?) waits for an action that runs
after every engine was added, so that a typo fails at start-up, naming it.
"""

from pyramid.config import PHASE2_CONFIG
from pyramid.exceptions import ConfigurationError

from pyramid_dbrouter import find_router, get_engines

from .router import ShardRouter
from .settings import (
    PREFIX,
    check_buckets,
    check_id_node,
    check_on_missing_key,
    check_shards,
    check_strategy_name,
)
from .shards import Shards
from .strategies import BUILTIN

REGISTRY_KEY = "dbrouter_shard"


def add_db_shards(
    config,
    shards,
    *,
    strategy="modulo",
    buckets=None,
    on_missing_key="fanout",
    id_node=0,
    _settings=False,
):
    """Spread the models that name a ``__shard_key__`` over the engines *shards*.

    *shards* are engine names in order (or ``NAME=BUCKETS`` entries giving
    each shard its buckets, such as ``shard_a=0-15,32``); *strategy* is
    ``"modulo"``, ``"hash"`` or a callable ``(key) -> engine name`` (or its
    dotted name); *buckets* defaults to the number of shards.  Called twice,
    it conflicts at ``config.commit()``.
    """
    if not hasattr(config, "add_db_router"):
        raise ConfigurationError(
            "dbrouter_shard needs pyramid_dbrouter: config.include('pyramid_dbrouter') "
            "before config.include('dbrouter_shard')"
        )
    source = "add_db_shards"

    def key(argument):
        # errors name what the user wrote: the setting, or the argument
        if _settings:
            return f"{PREFIX}{argument}"
        return f"{source}({argument}=...)"

    shards = check_shards(list(shards), key("shards"))
    strategy = _resolve_strategy(config, strategy, key("strategy"))
    if buckets is not None:
        buckets = check_buckets(buckets, key("buckets"), shards)
    on_missing_key = check_on_missing_key(on_missing_key, key("on_missing_key"))
    id_node = check_id_node(id_node, key("id_node"))
    if callable(strategy) and buckets not in (None, len(shards)):
        raise ConfigurationError(
            f"{key('buckets')}: buckets={buckets!r} with a callable strategy, which "
            "names the engine itself; leave buckets unset, or use modulo or hash"
        )
    made = Shards(shards, strategy, buckets, id_node)
    router = ShardRouter(made, on_missing_key)
    config.add_db_router(router, name="dbrouter_shard")

    intr = config.introspectable(
        "dbrouter shards", REGISTRY_KEY, repr(made), "dbrouter shards"
    )
    intr["shards"] = made.names
    intr["strategy"] = made.strategy_name
    intr["buckets"] = made.buckets
    intr["on_missing_key"] = on_missing_key

    def register():
        known = get_engines(config.registry)
        unknown = [name for name in made.names if name not in known]
        if unknown:
            raise ConfigurationError(
                f"{key('shards')}: {', '.join(map(repr, unknown))} "
                f"{'is' if len(unknown) == 1 else 'are'} not a configured engine"
                f"; configured engines: {', '.join(known)} (sqlalchemy.NAME.url)"
            )
        config.registry[REGISTRY_KEY] = made

    # after the engines (PHASE1_CONFIG), before the core's final check
    config.action(REGISTRY_KEY, register, order=PHASE2_CONFIG, introspectables=(intr,))


def _resolve_strategy(config, strategy, key):
    strategy = check_strategy_name(strategy, key)
    if strategy in BUILTIN:
        return strategy
    try:
        resolved = config.maybe_dotted(strategy)
    except (ImportError, ValueError, AttributeError) as exc:
        raise ConfigurationError(
            f"{key}: cannot import {strategy!r} ({exc}); use modulo, hash, or the "
            "dotted name of a callable (key) -> engine name"
        )
    if not callable(resolved):
        raise ConfigurationError(
            f"{key}: {strategy!r} is {resolved!r}, not a callable (key) -> engine "
            "name; use modulo, hash, or a callable's dotted name"
        )
    return resolved


def get_shards(context):
    """The application's :class:`Shards`, from a registry, a request or a
    session (the session of ``session_scope`` in a thread, say)."""
    router = find_router(context, ShardRouter)
    if router is not None:
        return router.shards
    registry = getattr(context, "registry", context)
    try:
        return registry[REGISTRY_KEY]
    except (KeyError, TypeError):
        raise LookupError(
            "no shards configured here: include dbrouter_shard with "
            "dbrouter.shard.shards set, or call config.add_db_shards()"
        ) from None
