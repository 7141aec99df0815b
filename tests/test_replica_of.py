"""``add_db_engine(name, url, replica_of=...)`` / ``add_db_replica``: a
replica's objects are its primary's.

Two SQLite engines on one file stand for a primary and its replica: what the
primary commits, the "replica" reads, as a caught-up streaming replica would.
The real streaming replica is tested with the dbrouter_replica plugin.
"""

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationError
from sqlalchemy import event, select

from pyramid_dbrouter import bind_of, init_db, session_scope
from sample import Album, Base, Photo


class ReadsFromReplica:
    def db_for_read(self, model, **hints):
        return "replica"


def make_app(tmp_path, primary="default", declare="engine"):
    path = tmp_path / "primary.db"
    config = Configurator(
        settings={"sqlalchemy.url": f"sqlite:///{tmp_path / 'default.db'}"}
    )
    config.include("pyramid_dbrouter")
    if primary != "default":
        config.add_db_engine(primary, f"sqlite:///{path}")
    else:
        config = Configurator(settings={"sqlalchemy.url": f"sqlite:///{path}"})
        config.include("pyramid_dbrouter")
    if declare == "engine":
        config.add_db_engine("replica", f"sqlite:///{path}", replica_of=primary)
    else:
        config.add_db_engine("replica", f"sqlite:///{path}")
        config.add_db_replica("replica", replica_of=primary)
    config.add_db_router(ReadsFromReplica())
    config.commit()
    init_db(config.registry, Base.metadata)
    return config.registry


def statements_on(registry, name):
    from pyramid_dbrouter import get_engines

    seen = []
    engine = get_engines(registry)[name]
    event.listen(
        engine, "before_cursor_execute", lambda *a: seen.append(a[2].split()[0])
    )
    return seen


@pytest.mark.parametrize("primary", ["default", "main"])
@pytest.mark.parametrize("declare", ["engine", "directive"])
def test_an_object_read_from_a_replica_is_the_primarys(tmp_path, primary, declare):
    registry = make_app(tmp_path, primary, declare)
    with session_scope(registry) as session:
        with session.using_bind(primary):
            session.add(Album(id=1, title="summer", photos=[Photo(title="a")]))
    on_replica = statements_on(registry, "replica")
    on_primary = statements_on(registry, primary)
    with session_scope(registry) as session:
        album = session.scalars(select(Album)).one()
        assert on_replica == ["SELECT"] and on_primary == []
        assert bind_of(album) == primary
        # one identity for the group: the primary's get() finds the same object
        assert session.using_bind(primary).get(Album, 1) is album
        assert session.get(Album, 1) is album
        assert [p.title for p in album.photos] == ["a"]  # lazy load: in the group
        album.title = "winter"
    assert "UPDATE" in on_primary
    assert on_replica.count("UPDATE") == 0 and on_replica.count("INSERT") == 0
    with session_scope(registry) as session:
        session.delete(session.scalars(select(Album)).one())
        session.using_bind("replica").add(Album(id=2, title="pinned to the replica"))
    assert "DELETE" in on_primary and "INSERT" in on_primary
    assert set(on_replica) == {"SELECT"}


def test_replica_of_an_unknown_engine_names_the_engines(tmp_path):
    config = Configurator(settings={"sqlalchemy.url": "sqlite://"})
    config.include("pyramid_dbrouter")
    config.add_db_engine("replica", "sqlite://", replica_of="primary")
    with pytest.raises(ConfigurationError, match="'primary' is not a configured"):
        config.commit()


def test_a_replica_of_a_replica_is_refused():
    config = Configurator(settings={"sqlalchemy.url": "sqlite://"})
    config.include("pyramid_dbrouter")
    config.add_db_engine("r1", "sqlite://", replica_of="default")
    config.add_db_engine("r2", "sqlite://", replica_of="r1")
    with pytest.raises(ConfigurationError, match="'r1' is itself a replica"):
        config.commit()


def test_an_engine_is_not_its_own_replica():
    config = Configurator(settings={"sqlalchemy.url": "sqlite://"})
    config.include("pyramid_dbrouter")
    with pytest.raises(ConfigurationError, match="cannot be its own replica"):
        config.add_db_replica("default", replica_of="default")


def test_declaring_a_replica_twice_conflicts():
    config = Configurator(settings={"sqlalchemy.url": "sqlite://"})
    config.include("pyramid_dbrouter")
    config.add_db_engine("r1", "sqlite://")
    config.add_db_replica("r1", replica_of="default")
    config.add_db_replica("r1", replica_of="default")
    with pytest.raises(ConfigurationConflictError, match="dbrouter-replica"):
        config.commit()
