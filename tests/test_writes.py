"""Which statements count as writes: the SQL verb decides for textual SQL."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from pyramid_dbrouter import get_session_factory
from pyramid_dbrouter.writes import (
    connections,
    has_changes,
    sql_writes,
    wrote,
    wrote_to,
)
from sample import Album, Base


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "  update t set x = 1",
        "DELETE FROM t",
        "-- a comment\nCREATE TABLE t (x int)",
        "/* why */ drop table t",
        "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone",
        "TRUNCATE t",
        "(insert into t values (1))",
    ],
)
def test_writes(sql):
    assert sql_writes(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  -- only a comment\n select * from t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SAVEPOINT sa_1",
        "SHOW max_prepared_transactions",
        "",
    ],
)
def test_reads_and_the_rest(sql):
    assert not sql_writes(sql)


def test_has_changes_answers_as_new_dirty_and_deleted_do():
    """What a router asks on every read: will the next flush write?"""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        assert not has_changes(session)
        album = Album(id=1, title="alps")
        session.add(album)
        assert has_changes(session) and session.new
        session.flush()
        assert not has_changes(session) and not session.dirty
        album.title = "dolomites"
        assert has_changes(session) and session.dirty
        session.flush()
        session.delete(album)
        assert has_changes(session) and session.deleted
        session.flush()
        assert not has_changes(session)
    engine.dispose()


def test_wrote_to_names_the_engines_a_transaction_wrote_to(tmp_path):
    engines = {
        name: create_engine(f"sqlite:///{tmp_path / name}.sqlite")
        for name in ("default", "other")
    }
    for engine in engines.values():
        Base.metadata.create_all(engine)
    factory = get_session_factory(engines)
    with factory() as session:
        assert not wrote_to(session, "default")
        session.using_bind("other").get(Album, 1)  # a read opens a connection
        assert not wrote_to(session, "other")
        session.using_bind("other").add(Album(id=1, title="alps"))
        session.flush()
        assert wrote_to(session, "other") and not wrote_to(session, "default")
        assert [name for name, conn in connections(session) if wrote(conn)] == ["other"]
