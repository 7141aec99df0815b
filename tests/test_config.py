"""The directives, and what ``config.include("pyramid_dbrouter")`` sets up."""

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationError
from sqlalchemy import create_engine, text

from pyramid_dbrouter import DBRouterError, get_engines
from sample import EverythingTo, Reads


def configurator(**settings):
    settings.setdefault("sqlalchemy.url", "sqlite://")
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    return config


def test_include_sets_up_the_session_factory_and_request_dbsession():
    config = configurator()
    config.commit()
    assert "dbsession_factory" in config.registry
    assert list(get_engines(config.registry)) == ["default"]
    import pyramid_tm

    assert config.registry.settings["tm.manager_hook"] is pyramid_tm.explicit_manager


def test_the_session_factory_is_on_the_registry_from_includeme_on():
    """As in the starter: main() may read it before make_wsgi_app()."""
    config = configurator(**{"sqlalchemy.other.url": "sqlite://"})
    factory = config.registry["dbsession_factory"]
    with pytest.raises(DBRouterError, match="not configured yet"):
        factory()
    config.commit()
    assert config.registry["dbsession_factory"] is factory
    session = factory()
    assert session.bind is get_engines(config.registry)["default"]
    assert session.using_bind("other").scalar(text("SELECT 1")) == 1
    session.close()


def test_a_users_own_manager_hook_is_kept():
    config = configurator(**{"tm.manager_hook": "mypackage.hook"})
    assert config.registry.settings["tm.manager_hook"] == "mypackage.hook"


def test_including_twice_is_harmless():
    config = configurator()
    config.include("pyramid_dbrouter")
    config.commit()
    assert list(get_engines(config.registry)) == ["default"]


def test_add_db_engine_from_a_url_or_an_engine():
    config = configurator()
    config.add_db_engine("archive", "sqlite://", echo=False)
    legacy = create_engine("sqlite://")
    config.add_db_engine("legacy", engine=legacy)
    config.commit()
    engines = get_engines(config.registry)
    assert list(engines) == ["default", "archive", "legacy"]
    assert engines["legacy"] is legacy


def test_the_same_engine_name_twice_conflicts():
    config = configurator()
    config.add_db_engine("archive", "sqlite:///one.db")
    config.add_db_engine("archive", "sqlite:///other.db")
    with pytest.raises(ConfigurationConflictError, match="dbrouter-engine"):
        config.commit()


def test_the_applications_own_engine_overrides_the_settings_one():
    # Pyramid's rule: configuration done by the application itself overrides
    # what an included package (here, the settings read by includeme) did
    config = configurator(**{"sqlalchemy.archive.url": "sqlite:///settings.db"})
    config.add_db_engine("archive", "sqlite://")
    config.commit()
    assert str(get_engines(config.registry)["archive"].url) == "sqlite://"


def test_the_same_router_twice_conflicts():
    config = configurator()
    config.add_db_router(Reads)
    config.add_db_router("sample.Reads")
    with pytest.raises(ConfigurationConflictError, match="dbrouter-router"):
        config.commit()


def test_routers_are_consulted_in_the_order_they_are_added():
    config = configurator(**{"dbrouter.routers": "sample.EverythingTo_a"})
    config.add_db_router(EverythingTo("b"), name="to-b")
    config.commit()
    chain = config.registry["dbrouter"].chain
    assert [type(r).__name__ for r in chain.routers] == [
        "EverythingTo_a",
        "EverythingTo",
    ]
    assert chain.db_for_read(None) == "a"


def test_bad_arguments_fail_when_the_directive_is_called():
    config = configurator()
    with pytest.raises(ConfigurationError, match="not a database URL"):
        config.add_db_engine("x", "::nonsense::")
    with pytest.raises(ConfigurationError, match="not a valid engine name"):
        config.add_db_engine("two words", "sqlite://")
    with pytest.raises(ConfigurationError, match="a url or engine= is needed"):
        config.add_db_engine("x")
    with pytest.raises(ConfigurationError, match="not an Engine"):
        config.add_db_engine("x", engine="sqlite://")
    with pytest.raises(ConfigurationError, match="not a valid prefix"):
        config.add_db_engine_factory("ten ant", lambda key, settings: "sqlite://")
    with pytest.raises(ConfigurationError, match="not callable"):
        config.add_db_engine_factory("tenant", 42)
    with pytest.raises(ImportError):
        config.add_db_router("sample.NoSuchRouter")


def test_engine_factories_conflict_on_the_same_prefix():
    config = configurator()
    config.add_db_engine_factory("tenant", lambda key, settings: "sqlite://")
    config.add_db_engine_factory("tenant", lambda key, settings: "sqlite://")
    with pytest.raises(ConfigurationConflictError, match="dbrouter-engine-factory"):
        config.commit()


def test_find_router_from_a_registry_and_a_session():
    """How a plugin finds its router (and the state it keeps) again."""
    from pyramid_dbrouter import find_router

    config = configurator(**{"sqlalchemy.other.url": "sqlite://"})
    config.add_db_router(EverythingTo("other"))
    assert find_router(config.registry, EverythingTo) is None  # not committed yet
    config.commit()
    router = find_router(config.registry, EverythingTo)
    assert isinstance(router, EverythingTo) and router.name == "other"
    session = config.registry["dbsession_factory"]()
    assert find_router(session, EverythingTo) is router
    assert find_router(session, Reads) is None
    session.close()
