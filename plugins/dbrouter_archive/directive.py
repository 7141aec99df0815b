"""``config.add_db_archive``: the directive.

It has Pyramid's shape: arguments are checked when it is called; the
router is added through the core's ``add_db_router``; what needs the
engines (are hot and archive configured engines?) waits for an action that
runs after every engine was added, so that a typo fails at start-up.
"""

from pyramid.config import PHASE2_CONFIG
from pyramid.exceptions import ConfigurationError
from sqlalchemy import event, inspect

from pyramid_dbrouter import get_engines

from .archive import REGISTRY_KEY, Archive
from .router import ArchiveRouter
from .settings import PREFIX, check_archive_writes, check_engine, check_models


def add_db_archive(
    config,
    archive,
    *,
    hot="default",
    models=None,
    archive_writes="origin",
    _settings=False,
):
    """Read *models* (mapped classes or their dotted names; None: every
    model) from the engines *hot* and *archive* as one; write new rows to
    *hot*.  *archive_writes* is ``"origin"`` (an object loaded from the
    archive is written back there) or ``"refuse"``.  Called twice, it
    conflicts at ``config.commit()``.
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
    if models is not None:
        models = [
            _mapped(config, m, key("models"))
            for m in check_models(models, key("models"))
        ]
    archive_writes = check_archive_writes(archive_writes, key("archive_writes"))
    made = Archive(hot, archive, models, archive_writes)
    config.add_db_router(ArchiveRouter(made), name="dbrouter_archive")

    intr = config.introspectable(
        "dbrouter archive", REGISTRY_KEY, repr(made), "dbrouter archive"
    )
    intr["hot"] = hot
    intr["archive"] = archive
    intr["models"] = "every model" if models is None else [m.__name__ for m in models]
    intr["archive_writes"] = archive_writes

    def register():
        registry = config.registry
        known = get_engines(registry)
        for role, name in (("hot", hot), ("archive", archive)):
            if name not in known:
                raise ConfigurationError(
                    f"{key(role)}: {name!r} is not a configured engine; configured "
                    f"engines: {', '.join(known)} (sqlalchemy.NAME.url)"
                )
        made.twophase = (registry.settings or {}).get("dbrouter.twophase", "auto")
        factory = registry["dbsession_factory"]
        # a row found in both engines (a move between its copy and its
        # delete) is read once, hot's: the core's fan-out option, for every
        # fan-out of the application's sessions
        factory.configure(fanout_unique="first")
        if archive_writes == "refuse":
            event.listen(factory, "before_flush", made.check_flush)
        registry[REGISTRY_KEY] = made

    # after the engines (PHASE1_CONFIG), before the core makes the factory
    config.action(REGISTRY_KEY, register, order=PHASE2_CONFIG, introspectables=(intr,))


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
