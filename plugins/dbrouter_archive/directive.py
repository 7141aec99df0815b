"""``config.add_db_archive``: the directive.

It has Pyramid's shape: arguments are checked when it is called; the
router is added through the core's ``add_db_router``; what needs the
engines (are hot and archive configured engines?) waits for an action that
runs after every engine was added, so that a typo fails at start-up.
"""

from pyramid.config import PHASE2_CONFIG
from pyramid.exceptions import ConfigurationError
from sqlalchemy import event, inspect

from pyramid_dbrouter import PHASE_FINISH, get_state

from .archive import REGISTRY_KEY, Archive
from .router import ArchiveRouter
from .settings import (
    PREFIX,
    check_archive_writes,
    check_engine,
    check_models,
    per_key_prefix,
)


def add_db_archive(
    config,
    archive,
    *,
    hot="default",
    models=None,
    archive_writes="origin",
    references=None,
    _settings=False,
):
    """Read *models* (mapped classes or their dotted names; None: every
    model) from the engines *hot* and *archive* as one; write new rows to
    *hot*.  *hot* and *archive* may both be ``PREFIX:*`` (``"tenant:*"``,
    ``"archive:*"``): an archive per key, the hot engine being what the
    routers after this one choose.  *references* are models copied (not
    moved) to the archive when an archived row refers to them.
    *archive_writes* is ``"origin"`` (an object loaded from the archive is
    written back there) or ``"refuse"``.  Called twice, it conflicts at
    ``config.commit()``.
    """
    if not hasattr(config, "add_db_router"):
        raise ConfigurationError(
            "dbrouter_archive needs pyramid_dbrouter: config.include("
            "'pyramid_dbrouter') before config.include('dbrouter_archive')"
        )

    def key(argument):
        # errors name what the user wrote: the setting, or the argument
        return f"{PREFIX}{argument}" if _settings else f"add_db_archive({argument}=...)"

    archive = check_engine(archive, key("archive"))
    hot = check_engine(hot, key("hot"))
    if hot == archive:
        raise ConfigurationError(
            f"{key('archive')}: {archive!r} is also the hot engine; the archive is "
            "another engine (sqlalchemy.NAME.url)"
        )
    hot_prefix, archive_prefix = per_key_prefix(hot), per_key_prefix(archive)
    if (hot_prefix is None) != (archive_prefix is None):
        raise ConfigurationError(
            f"{key('archive')}: {archive!r} with hot {hot!r}: both are engine names, "
            "or both PREFIX:* (an archive per key, tenant:* and archive:*: rows of "
            "several hot engines in one archive would collide on their keys)"
        )
    if hot_prefix is not None and hot_prefix == archive_prefix:
        raise ConfigurationError(
            f"{key('archive')}: {archive!r} is also the hot engines' prefix; the "
            "archive is another engine factory (archive:*)"
        )
    if models is not None:
        models = [
            _mapped(config, m, key("models"))
            for m in check_models(models, key("models"))
        ]
    if references is not None:
        references = [
            _mapped(config, m, key("references"))
            for m in check_models(references, key("references"))
        ]
        both = set(references) & set(models or ())
        if both:
            raise ConfigurationError(
                f"{key('references')}: {sorted(m.__name__ for m in both)} are also "
                "archived models; a model's rows are moved (models) or copied "
                "(references), not both"
            )
    archive_writes = check_archive_writes(archive_writes, key("archive_writes"))
    made = Archive(hot, archive, models, archive_writes, references)
    config.add_db_router(ArchiveRouter(made), name="dbrouter_archive")

    intr = config.introspectable(
        "dbrouter archive", REGISTRY_KEY, repr(made), "dbrouter archive"
    )
    intr["hot"] = hot
    intr["archive"] = archive
    intr["models"] = "every model" if models is None else [m.__name__ for m in models]
    intr["references"] = [m.__name__ for m in references or ()]
    intr["archive_writes"] = archive_writes

    def register():
        registry = config.registry
        engines = get_state(registry).engines
        known = engines.names()
        factories = engines.factories
        for role, name in (("hot", hot), ("archive", archive)):
            prefix = per_key_prefix(name)
            if prefix is not None:
                if prefix not in factories:
                    raise ConfigurationError(
                        f"{key(role)}: {name!r}: no engine factory has the prefix "
                        f"{prefix!r}; engine factories: "
                        f"{', '.join(sorted(factories)) or 'none'} "
                        "(config.add_db_engine_factory)"
                    )
            elif name not in known:
                raise ConfigurationError(
                    f"{key(role)}: {name!r} is not a configured engine; configured "
                    f"engines: {', '.join(known)} (sqlalchemy.NAME.url)"
                )
        made.twophase = (registry.settings or {}).get("dbrouter.twophase", "auto")
        factory = registry["dbsession_factory"]
        # a row found in both engines (a move between its copy and its
        # delete) is read once, hot's: the core's fan-out option, for every
        # fan-out of the application's sessions; per key, only within each
        # hot/archive pair (other keys' rows may share an id)
        factory.configure(fanout_unique=made.pair_of if made.per_key else "first")
        if archive_writes == "refuse":
            event.listen(factory, "before_flush", made.check_flush)
        registry[REGISTRY_KEY] = made

    # after the engines (PHASE1_CONFIG), before the core makes the factory
    config.action(REGISTRY_KEY, register, order=PHASE2_CONFIG, introspectables=(intr,))

    def check_chain():
        routers = get_state(config.registry).chain.routers
        mine = [i for i, r in enumerate(routers) if getattr(r, "archive", None) is made]
        if mine and mine[0] == len(routers) - 1:
            raise ConfigurationError(
                f"{key('hot')}: {hot!r} is the engine the routers after "
                "dbrouter_archive's choose, and there is none: add the router that "
                f"picks {hot_prefix}:KEY (include dbrouter_tenant, say) after "
                "dbrouter_archive"
            )

    if hot_prefix is not None:
        # once the core has made the chain
        config.action(None, check_chain, order=PHASE_FINISH + 1)


def _mapped(config, model, key):
    try:
        resolved = config.maybe_dotted(model)
    except (ImportError, ValueError, AttributeError) as exc:
        raise ConfigurationError(
            f"{key}: cannot import {model!r} ({exc}); name a mapped class as "
            "package.module:Class"
        )
    if not isinstance(resolved, type) or inspect(resolved, raiseerr=False) is None:
        raise ConfigurationError(
            f"{key}: {model!r} is {resolved!r}, not a mapped class; name a "
            "declarative model such as myapp.models:Order"
        )
    return resolved
