"""``config.add_db_replicas``: the directive.

It has Pyramid's shape: arguments are checked when it is called; each
replica is declared to the core (``add_db_replica``: its objects are its
primary's), the router is added with ``add_db_router`` and the pin tween with
``add_tween``; what needs the engines (are they configured?) waits for an
action that runs after every engine was added, so that a typo fails at
start-up, naming the key.
"""

import time

from pyramid.config import PHASE2_CONFIG
from pyramid.exceptions import ConfigurationError

from pyramid_dbrouter import get_engines

from .health import Health
from .pinning import Pin
from .replicas import REGISTRY_KEY, Replicas
from .router import ReplicaRouter, ping_on_checkout
from .settings import (
    DEFAULTS,
    PREFIX,
    check_groups,
    check_number,
    check_secret,
    check_strategy,
)


def add_db_replicas(
    config,
    replicas,
    *,
    primary=DEFAULTS["primary"],
    strategy=DEFAULTS["strategy"],
    pin_seconds=DEFAULTS["pin_seconds"],
    max_lag_seconds=DEFAULTS["max_lag_seconds"],
    cooldown_seconds=DEFAULTS["cooldown_seconds"],
    check_seconds=DEFAULTS["check_seconds"],
    secret=None,
    _settings=False,
    _clock=time.monotonic,
    _wall_clock=time.time,
):
    """Read from the engines *replicas*, which replicate *primary*.

    *replicas* are engine names (``["replica1", "replica2"]``), or, for
    several primaries, ``{"default": ["replica1"], "orders": ["orders_r1"]}``.
    A replica lagging more than *max_lag_seconds* (measured every
    *check_seconds*) or refusing connections is skipped for
    *cooldown_seconds*; a client that wrote reads from the primary for
    *pin_seconds* (0: never), by a cookie signed with *secret*.  Called
    twice, it conflicts at ``config.commit()``.
    """
    if not hasattr(config, "add_db_replica"):
        raise ConfigurationError(
            "dbrouter_replica needs pyramid_dbrouter: config.include("
            "'pyramid_dbrouter') before config.include('dbrouter_replica')"
        )

    def key(argument):
        # errors name what the user wrote: the setting, or the argument
        return (
            f"{PREFIX}{argument}" if _settings else f"add_db_replicas({argument}=...)"
        )

    groups = check_groups(replicas, primary, key("replicas"), key("primary"))
    strategy = check_strategy(strategy, key("strategy"))
    max_lag = check_number(max_lag_seconds, key("max_lag_seconds"))
    cooldown = check_number(cooldown_seconds, key("cooldown_seconds"))
    every = check_number(check_seconds, key("check_seconds"))
    least = max_lag + every
    pin_for = check_number(
        pin_seconds,
        key("pin_seconds"),
        zero_ok=True,
        why=f" (0 turns pinning off; at least max_lag_seconds + check_seconds = "
        f"{least:g}, so that a client reads its own writes)",
    )
    if 0 < pin_for < least:
        raise ConfigurationError(
            f"{key('pin_seconds')}: {pin_seconds!r} is shorter than max_lag_seconds "
            f"+ check_seconds ({max_lag:g} + {every:g}): a replica in service may be "
            f"that far behind, and a client would not read its own writes; use "
            f"{least:g} or more, or 0 to turn pinning off"
        )
    pin = None
    if pin_for > 0:
        pin = Pin(check_secret(secret, key("secret")), pin_for, clock=_wall_clock)
    health = Health(
        groups,
        strategy=strategy,
        max_lag_seconds=max_lag,
        cooldown_seconds=cooldown,
        check_seconds=every,
        clock=_clock,
    )
    made = Replicas(groups, health, pin)
    made.router = ReplicaRouter(made)

    for group_primary, names in groups.items():
        for name in names:
            config.add_db_replica(name, replica_of=group_primary)
    config.add_db_router(made.router, name="dbrouter_replica")
    if pin is not None:
        config.add_tween(
            "dbrouter_replica.pinning.pin_tween_factory",
            under="pyramid_tm.tm_tween_factory",
        )

    intr = config.introspectable(
        "dbrouter replicas groups", REGISTRY_KEY, repr(made), "dbrouter replicas"
    )
    intr["groups"] = groups
    intr["strategy"] = strategy
    intr["pin_seconds"] = pin_for
    intr["max_lag_seconds"] = max_lag
    intr["cooldown_seconds"] = cooldown

    def register():
        known = get_engines(config.registry)
        for group_primary, names in groups.items():
            unknown = [n for n in (group_primary, *names) if n not in known]
            if unknown:
                where = (
                    key("primary") if unknown == [group_primary] else key("replicas")
                )
                raise ConfigurationError(
                    f"{where}: {', '.join(map(repr, unknown))} "
                    f"{'is' if len(unknown) == 1 else 'are'} not a configured engine"
                    f"; configured engines: {', '.join(known)} (sqlalchemy.NAME.url)"
                )
        made.engines = known
        health.engine_of = made.engine
        for names in groups.values():
            for name in names:
                ping_on_checkout(known[name])
        config.registry[REGISTRY_KEY] = made

    # after the engines (PHASE1_CONFIG), before the core's final check
    config.action(REGISTRY_KEY, register, order=PHASE2_CONFIG, introspectables=(intr,))
