"""pyramid_dbrouter: one SQLAlchemy session per Pyramid request over many
named engines, routed by Django-style router plugins, committed together.

``config.include("pyramid_dbrouter")`` reads the ``sqlalchemy.*`` and
``dbrouter.*`` settings, adds the directives ``add_db_engine``,
``add_db_router``, ``add_db_engine_factory`` and ``add_db_replica``,
includes pyramid_tm and pyramid_retry, and gives each request ``request.dbsession``.
"""

from .config import (
    PHASE_FINISH,
    add_db_engine,
    add_db_engine_factory,
    add_db_replica,
    add_db_router,
    dispose_engine,
    find_router,
    finish,
    get_engines,
    get_state,
)
from .engines import EngineRegistry, get_engine
from .exceptions import (
    ConfigurationError,
    CrossDatabaseRelationError,
    DBRouterError,
    FanoutError,
    RouterAnswerError,
    UnknownBindError,
    UnsafeCommitError,
)
from .factory import (
    get_session_factory,
    get_tm_session,
    request_dbsession,
    unconfigured_factory,
)
from .fanout import FanoutEngineError, FanoutTimeoutError
from .masking import mask_url
from .migrate import init_db
from .reflect import reflect_engine
from .registration import register
from .routers import RouterChain
from .scope import session_scope
from .session import RoutingSession, bind_of
from .shared_dialects import SharedDialects
from .where import where_values

__all__ = [
    "ConfigurationError",
    "CrossDatabaseRelationError",
    "DBRouterError",
    "EngineRegistry",
    "FanoutEngineError",
    "FanoutError",
    "FanoutTimeoutError",
    "RouterAnswerError",
    "RouterChain",
    "RoutingSession",
    "SharedDialects",
    "UnknownBindError",
    "UnsafeCommitError",
    "bind_of",
    "dispose_engine",
    "get_engine",
    "get_engines",
    "get_session_factory",
    "get_tm_session",
    "includeme",
    "find_router",
    "init_db",
    "mask_url",
    "reflect_engine",
    "register",
    "session_scope",
    "where_values",
]


def includeme(config):
    """Set up pyramid_dbrouter: directives, engines and routers from the
    settings, pyramid_tm, pyramid_retry and ``request.dbsession``."""
    settings = config.get_settings()
    # the cookiecutter-starter's choice, without overriding the user's own
    settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    config.include("pyramid_tm")
    config.include("pyramid_retry")
    config.add_directive("add_db_engine", add_db_engine)
    config.add_directive("add_db_router", add_db_router)
    config.add_directive("add_db_engine_factory", add_db_engine_factory)
    config.add_directive("add_db_replica", add_db_replica)
    state = get_state(config.registry)  # the settings, parsed once, kept there
    for name, spec in state.settings.engines.items():
        if spec.engine is not None:
            config.add_db_engine(name, engine=spec.engine)
        else:
            config.add_db_engine(name, spec.url, **spec.options)
    for router in state.settings.routers:
        config.add_db_router(router)
    # handed out now, as the starter's includeme does, so that main() can
    # read it before make_wsgi_app(); configured once engines are known
    factory = state.factory = unconfigured_factory()
    config.registry["dbsession_factory"] = factory
    config.add_request_method(request_dbsession, "dbsession", reify=True)
    config.action(
        ("dbrouter", "finish"), lambda: finish(config.registry), order=PHASE_FINISH
    )
