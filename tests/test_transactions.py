"""One transaction across engines: what is committed, and when it is refused.

==========================  ==========================================
engines that wrote          at commit
==========================  ==========================================
none                        every engine rolled back
one                         ordinary one-phase commit of that engine
two or more (SQLite)        UnsafeCommitError, everything rolled back
==========================  ==========================================

Engines whose connections share one DBAPI connection count once.
"""

import pytest
import transaction
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.pool import SingletonThreadPool
from zope.sqlalchemy import mark_changed

from pyramid_dbrouter import (
    UnsafeCommitError,
    get_session_factory,
    get_tm_session,
    session_scope,
)
from sample import Album, rows


@pytest.fixture
def engines(sqlite_engines):
    return sqlite_engines("default", "a", "b")


@pytest.fixture
def tm():
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    yield manager
    try:
        manager.abort()  # whatever a test left open
    except transaction.interfaces.NoTransaction:
        pass


def tm_session(engines, tm, *routers):
    return get_tm_session(get_session_factory(engines, list(routers)), tm)


def count(path):
    return rows(path, "select count(*) from albums")[0][0]


def test_two_sqlite_writers_are_refused_and_neither_file_changes(engines, tm, db_path):
    session = tm_session(engines, tm)
    session.using_bind("a").add(Album(id=1, title="a"))
    session.using_bind("b").add(Album(id=1, title="b"))
    with pytest.raises(UnsafeCommitError) as info:
        tm.commit()
    assert "'a', 'b'" in str(info.value)
    assert count(db_path("a")) == count(db_path("b")) == 0


def test_engines_sharing_one_dbapi_connection_are_one_participant(
    engines, tm, tmp_path, db_path
):
    """``execution_options()`` copies of an engine whose pool hands a thread
    one connection (SingletonThreadPool) write through one DBAPI connection:
    one transaction, committed by one COMMIT -- not two SQLite writers."""
    hub = create_engine(f"sqlite:///{tmp_path}/a.db", poolclass=SingletonThreadPool)
    shared = {
        "default": engines["default"],
        "left": hub.execution_options(tag="left"),
        "right": hub.execution_options(tag="right"),
    }
    session = tm_session(shared, tm)
    session.using_bind("left").add(Album(id=1, title="left"))
    session.using_bind("right").add(Album(id=2, title="right"))
    session.flush()
    connections = [
        session.connection(bind_arguments={"bind": shared[n]})
        for n in ("left", "right")
    ]
    assert connections[0] is not connections[1]
    assert (
        connections[0].connection.dbapi_connection
        is connections[1].connection.dbapi_connection
    )
    tm.commit()
    assert rows(db_path("a"), "select id, title from albums order by id") == [
        (1, "left"),
        (2, "right"),
    ]
    hub.dispose()


def test_one_writer_commits_and_readers_do_not_matter(engines, tm, db_path):
    session = tm_session(engines, tm)
    session.using_bind("b").scalars(select(Album)).all()
    session.using_bind("a").add(Album(id=1, title="a"))
    tm.commit()
    assert count(db_path("a")) == 1
    assert count(db_path("b")) == 0


def test_no_writer_rolls_every_engine_back(engines, tm):
    ended = []
    for name in ("a", "b"):
        event.listen(
            engines[name], "rollback", lambda conn, name=name: ended.append(name)
        )
        event.listen(engines[name], "commit", lambda conn: ended.append("COMMIT"))
    session = tm_session(engines, tm)
    session.using_bind("a").scalars(select(Album)).all()
    session.using_bind("b").scalars(select(Album)).all()
    tm.commit()
    assert sorted(ended) == ["a", "b"]


def test_a_savepoint_never_resets_what_an_engine_wrote(engines, tm, db_path):
    session = tm_session(engines, tm)
    session.using_bind("a").add(Album(id=1, title="a"))
    session.flush()
    savepoint = session.begin_nested()
    session.using_bind("b").add(Album(id=1, title="b"))
    session.flush()
    savepoint.rollback()
    with pytest.raises(UnsafeCommitError):
        tm.commit()
    assert count(db_path("a")) == count(db_path("b")) == 0


class TestTextualWrites:
    """``text()`` has no model: the SQL verb tells whether it wrote."""

    def test_through_the_session_they_commit(self, engines, tm, db_path):
        session = tm_session(engines, tm)
        session.execute(text("INSERT INTO albums (id, title) VALUES (1, 'txt')"))
        tm.commit()
        assert count(db_path("default")) == 1

    def test_on_a_raw_connection_they_need_mark_changed(self, engines, tm, db_path):
        session = tm_session(engines, tm)
        session.connection().execute(
            text("INSERT INTO albums (id, title) VALUES (1, 'x')")
        )
        mark_changed(session)
        tm.commit()
        assert count(db_path("default")) == 1

    def test_without_mark_changed_zope_sqlalchemy_rolls_them_back(
        self, engines, tm, db_path
    ):
        # zope.sqlalchemy's documented behaviour for work it cannot see
        session = tm_session(engines, tm)
        session.connection().execute(
            text("INSERT INTO albums (id, title) VALUES (1, 'x')")
        )
        tm.commit()
        assert count(db_path("default")) == 0

    def test_textual_writes_to_two_engines_are_refused(self, engines, tm, db_path):
        session = tm_session(engines, tm)
        insert_sql = text("INSERT INTO albums (id, title) VALUES (1, 'x')")
        session.using_bind("a").execute(insert_sql)
        session.using_bind("b").execute(insert_sql)
        with pytest.raises(UnsafeCommitError):
            tm.commit()
        assert count(db_path("a")) == count(db_path("b")) == 0

    def test_textual_reads_are_not_writes(self, engines, tm):
        session = tm_session(engines, tm)
        session.using_bind("a").execute(text("SELECT 1"))
        session.using_bind("b").execute(text("  -- a comment\n select * from albums"))
        session.add(Album(id=1, title="one writer"))
        tm.commit()


class TestSessionScope:
    def settings(self, db_path):
        return {
            "sqlalchemy.url": f"sqlite:///{db_path('default')}",
            "sqlalchemy.a.url": f"sqlite:///{db_path('a')}",
            "dbrouter.routers": "sample.EverythingTo_a",
        }

    def test_commits_when_the_block_ends(self, engines, db_path):
        with session_scope(self.settings(db_path)) as session:
            session.add(Album(id=1, title="script"))
        assert rows(db_path("a"), "select title from albums") == [("script",)]

    def test_aborts_when_the_block_raises(self, engines, db_path):
        with (
            pytest.raises(RuntimeError),
            session_scope(self.settings(db_path)) as session,
        ):
            session.add(Album(id=1, title="lost"))
            session.flush()
            raise RuntimeError("boom")
        assert count(db_path("a")) == 0

    def test_uses_an_applications_registry(self, engines, db_path):
        from pyramid.config import Configurator

        with Configurator(settings=self.settings(db_path)) as config:
            config.include("pyramid_dbrouter")
        with session_scope(config.registry) as session:
            session.add(Album(id=2, title="from registry"))
        assert rows(db_path("a"), "select title from albums") == [("from registry",)]
