"""Engines by name, and engines made on demand by a factory (bounded LRU)."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize("key", ["0\n", "acme\n", "a\r", "a\x00"])
def test_a_key_must_match_in_full_not_before_a_final_newline(key):
    # ``^...$`` with re.match accepts "0\n": ``$`` matches before a final newline
    engines = EngineRegistry()
    engines.add_factory("tenant", lambda key, settings: "sqlite://")
    with pytest.raises(UnknownBindError, match="invalid key"):
        engines.get(f"tenant:{key}")


@settings(max_examples=2000, deadline=None)
@given(st.text(min_size=0, max_size=140))
def test_fuzzed_keys_reach_the_factory_only_when_safe(key):
    seen = []
    engines = EngineRegistry()
    engines.add_factory("tenant", lambda key, settings: seen.append(key) or "sqlite://")
    try:
        engines.get(f"tenant:{key}").dispose()
    except UnknownBindError:
        assert seen == []
        return
    (got,) = seen
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", got) and ".." not in got


def test_discard_closes_and_forgets_one_dynamic_engine():
    made = []
    engines = EngineRegistry()
    engines.add_factory("tenant", lambda key, settings: made.append(key) or "sqlite://")
    first = engines.get("tenant:one")
    assert engines.discard("tenant:one") is True
    assert engines.open_dynamic_names() == []
    assert engines.name_of(first) is None
    assert engines.discard("tenant:one") is False
    engines.get("tenant:one")
    assert made == ["one", "one"]  # made anew after the discard
    engines.dispose()


def test_a_branch_driver_does_not_keep_its_engine_dialect_alive():
    # a leak of about 8 KB per engine an engine factory ever made (10,000
    # tenants through an LRU of 64 engines grew the process by 110 MB)
    import gc
    import weakref

    from pyramid_dbrouter.branches import driver_for

    engine = create_engine("sqlite://")
    driver_for(engine)
    dialect = weakref.ref(engine.dialect)
    del engine
    gc.collect()
    assert dialect() is None
