"""Engines by name, and engines made on demand by a factory (bounded LRU)."""

import pytest
from sqlalchemy import create_engine, select

from pyramid_dbrouter import (
    EngineRegistry,
    UnknownBindError,
    get_engine,
    get_session_factory,
)
from sample import Album, Base


def test_unknown_names_list_the_known_ones():
    engines = EngineRegistry()
    engines.add("default", create_engine("sqlite://"))
    engines.add_factory("tenant", lambda key, settings: "sqlite://")
    with pytest.raises(UnknownBindError) as info:
        engines.get("archive")
    assert "'archive'" in str(info.value)
    assert "'default'" in str(info.value) and "'tenant:KEY'" in str(info.value)


def test_dynamic_engines_are_made_on_first_use_and_kept_in_an_lru(tmp_path):
    made = []

    def factory(key, settings):
        made.append(key)
        return f"sqlite:///{tmp_path / key}.db"

    engines = EngineRegistry(max_dynamic_engines=2)
    engines.add("default", create_engine("sqlite://"))
    engines.add_factory("tenant", factory)
    first = engines.get("tenant:one")
    assert engines.get("tenant:one") is first
    engines.get("tenant:two")
    engines.get("tenant:one")  # "one" is now the most recently used
    engines.get("tenant:three")  # evicts "two"
    assert engines.open_dynamic_names() == ["tenant:one", "tenant:three"]
    engines.get("tenant:two")
    assert made == ["one", "two", "three", "two"]
    engines.dispose()


@pytest.mark.parametrize(
    "key", ["../etc", "a/b", "", ".hidden", "a b", "x" * 200, "a..b", "a.."]
)
def test_dynamic_keys_are_validated_before_they_reach_the_factory(key):
    called = []
    engines = EngineRegistry()
    engines.add_factory("tenant", lambda key, settings: called.append(key))
    with pytest.raises(UnknownBindError, match="invalid key"):
        engines.get(f"tenant:{key}")
    assert called == []


def test_a_dynamic_engine_in_a_session(tmp_path):
    def factory(key, settings):
        engine = create_engine(f"sqlite:///{tmp_path / key}.db")
        Base.metadata.create_all(engine)
        return engine

    engines = EngineRegistry()
    engines.add("default", create_engine("sqlite://"))
    engines.add_factory("folder", factory)
    session = get_session_factory(engines)()
    session.using_bind("folder:holidays").add(Album(id=1, title="beach"))
    session.commit()
    album = session.using_bind("folder:holidays").scalars(select(Album)).one()
    assert album.title == "beach"
    engines.dispose()


def test_get_engine_is_the_default_engine_only():
    engine = get_engine(
        {
            "sqlalchemy.url": "sqlite://",
            "sqlalchemy.echo": "false",
            "sqlalchemy.a.url": "sqlite:///a.db",
        }
    )
    assert str(engine.url) == "sqlite://"
