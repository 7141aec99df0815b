"""Bulk UPDATE and DELETE on several engines, from a list ``db_for_write`` answers.

The statement runs on each engine in the session's transaction and the
transaction commits them together; where the commit could not, nothing runs
at all.  Every test counts the statements each engine received and reads the
databases with connections of their own.
"""

import collections
import contextlib
import re

import pytest
import transaction
from sqlalchemy import create_engine, delete, event, insert, text, update

from pyramid_dbrouter import (
    RouterAnswerError,
    UnsafeCommitError,
    bind_of,
    get_session_factory,
    get_tm_session,
)
from pyramid_dbrouter.checkpoints import Checkpoint
from pyramid_dbrouter.engines import EngineRegistry
from pyramid_dbrouter.twophase import TwoPhasePolicy
from sample import Album, Base
from twophase_fixtures import inject_fault


class BulkTo:
    """Bulk UPDATE and DELETE of every model to *names*; the rest abstains."""

    def __init__(self, *names):
        self.names = list(names)

    def db_for_write(self, model, **hints):
        clause = hints.get("clause")
        if clause is not None and (clause.is_update or clause.is_delete):
            return self.names
        return None


class AlwaysMany:
    """A list for every write: wrong for anything but a bulk UPDATE or DELETE."""

    def db_for_write(self, model, **hints):
        return ["a", "b"]


#: the bulk statements, each renaming or removing the albums titled "x"
BULK = {
    "orm update": lambda: update(Album).where(Album.title == "x").values(title="y"),
    "orm delete": lambda: delete(Album).where(Album.title == "x"),
    "core update": lambda: (
        update(Album.__table__).where(Album.__table__.c.title == "x").values(title="y")
    ),
    "core delete": lambda: delete(Album.__table__).where(
        Album.__table__.c.title == "x"
    ),
}


def titles(url):
    """The albums of the database at *url*, read with an engine of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT id, title FROM albums ORDER BY id")).all()
    finally:
        engine.dispose()


def seed(urls, rows=((1, "x"), (2, "z"))):
    for url in urls:
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(Album.__table__), [{"id": i, "title": t} for i, t in rows]
            )
        engine.dispose()


@contextlib.contextmanager
def counting(engines):
    """``{engine name: [SQL]}`` of the statements sent inside the block."""
    sent = collections.defaultdict(list)
    added = []
    for name, engine in engines.items():

        def listen(conn, cursor, statement, *args, name=name):
            sent[name].append(statement)

        event.listen(engine, "before_cursor_execute", listen)
        added.append((engine, listen))
    try:
        yield sent
    finally:
        for engine, listen in added:
            event.remove(engine, "before_cursor_execute", listen)


@contextlib.contextmanager
def tm_session(engines, *routers, **policy):
    """A session joined to a transaction manager of its own, committed at
    the end of the block (aborted if it raises); *policy*: the
    ``TwoPhasePolicy``'s settings (``mode="off"``)."""
    registry = EngineRegistry()
    for name, engine in engines.items():
        registry.add(name, engine)
    factory = get_session_factory(
        registry, list(routers), TwoPhasePolicy(registry, **policy)
    )
    manager = transaction.TransactionManager(explicit=True)
    with manager:
        yield get_tm_session(factory, manager)


@pytest.fixture
def sqlite_files(tmp_path):
    """``default``, ``a``, ``b``, ``c``: SQLite files holding albums 1 "x", 2 "z"."""
    urls = {n: f"sqlite:///{tmp_path / n}.db" for n in ("default", "a", "b", "c")}
    seed(urls.values())
    engines = {n: create_engine(u) for n, u in urls.items()}
    yield urls, engines
    for engine in engines.values():
        engine.dispose()


# -- refused before any SQL ---------------------------------------------------------


@pytest.mark.parametrize("kind", BULK)
def test_three_sqlite_files_are_refused_before_any_sql(sqlite_files, kind):
    urls, engines = sqlite_files
    with counting(engines) as sent:
        with pytest.raises(UnsafeCommitError) as info:
            with tm_session(engines, BulkTo("a", "b", "c")) as session:
                session.execute(BULK[kind]())
    assert str(info.value) == (
        "engines 'a', 'b', 'c' would all write in one transaction, and 'a', 'b', "
        "'c' cannot take part in a two-phase commit (at most one such engine may "
        "write, committed last); nothing was run"
    )
    assert dict(sent) == {}
    for name in ("a", "b", "c"):
        assert titles(urls[name]) == [(1, "x"), (2, "z")]


def test_twophase_off_refuses_any_write_on_several_engines(sqlite_files):
    urls, engines = sqlite_files
    with counting(engines) as sent:
        with pytest.raises(UnsafeCommitError, match="dbrouter.twophase = off"):
            with tm_session(engines, BulkTo("a", "default"), mode="off") as session:
                session.execute(BULK["orm update"]())
    assert dict(sent) == {}


def test_a_session_committed_by_itself_is_refused(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines, [BulkTo("a", "b")])()
    with counting(engines) as sent:
        with pytest.raises(UnsafeCommitError, match="session.commit.. cannot commit"):
            session.execute(BULK["orm delete"]())
    session.close()
    assert dict(sent) == {}


# -- a list is for a bulk UPDATE or DELETE only ------------------------------------


def test_a_list_for_a_new_object_fails_at_flush_before_any_sql(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines, [AlwaysMany()])()
    with counting(engines) as sent:
        session.add(Album(id=3, title="new"))
        with pytest.raises(RouterAnswerError) as info:
            session.flush()
    session.close()
    assert "AlwaysMany.db_for_write returned ['a', 'b'] for a new Album" in str(
        info.value
    )
    assert dict(sent) == {}


def test_a_list_for_an_insert_fails_before_any_sql(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines, [AlwaysMany()])()
    with counting(engines) as sent:
        with pytest.raises(RouterAnswerError, match="for an INSERT into Album"):
            session.execute(insert(Album).values(id=3, title="new"))
    session.close()
    assert dict(sent) == {}


def test_an_orm_bulk_update_by_primary_key_is_refused_before_any_sql(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines, [BulkTo("a", "b")])()
    with counting(engines) as sent:
        with pytest.raises(RouterAnswerError) as info:
            session.execute(update(Album), [{"id": 1, "title": "n"}])
    session.close()
    assert str(info.value).startswith(
        "router BulkTo sends an ORM bulk UPDATE of Album by primary key (1 "
        "parameter sets) to engines ['a', 'b']: each row is on one engine"
    )
    assert dict(sent) == {}


def test_an_orm_bulk_update_by_primary_key_on_a_given_bind_goes_there(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines)()
    rows = [{"id": 1, "title": "n"}]
    session.execute(update(Album), rows, bind_arguments={"bind": engines["a"]})
    session.commit()
    assert titles(urls["a"]) == [(1, "n"), (2, "z")]
    assert titles(urls["default"]) == [(1, "x"), (2, "z")]


def test_get_bind_of_a_bulk_write_on_several_engines_is_refused(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines, [BulkTo("a", "b")])()
    with pytest.raises(RouterAnswerError, match="run the statement with session"):
        session.get_bind(clause=BULK["orm update"]())
    session.close()


# -- synchronize_session on the default engine -------------------------------------


@pytest.mark.parametrize("sync", ["auto", "evaluate", "fetch"])
def test_an_update_on_default_leaves_other_engines_objects_alone(sqlite_files, sync):
    urls, engines = sqlite_files
    session = get_session_factory(engines)()
    mine = session.get(Album, 1)
    other = session.using_bind("a").get(Album, 1)
    statement = BULK["orm update"]().execution_options(synchronize_session=sync)
    assert session.execute(statement).rowcount == 1
    # default's row and object changed; a's row did not, nor may its object
    assert (mine.title, other.title) == ("y", "x")
    session.close()


def test_returning_objects_of_an_engine_carry_its_identity(sqlite_files):
    urls, engines = sqlite_files
    session = get_session_factory(engines)()
    statement = BULK["orm update"]().returning(Album)
    (album,) = session.using_bind("a").scalars(statement).all()
    assert (bind_of(album), album.title) == ("a", "y")
    session.close()


# -- on real servers: committed together -------------------------------------------


@pytest.fixture
def servers(pg_db, pg_db2, tmp_path):
    """``default`` and ``pg2`` on two PostgreSQL servers, ``lite`` and
    ``lite2`` SQLite files: albums 1 "x", 2 "z" in each."""
    urls = {
        "default": pg_db,
        "pg2": pg_db2,
        "lite": f"sqlite:///{tmp_path / 'lite'}.db",
        "lite2": f"sqlite:///{tmp_path / 'lite2'}.db",
    }
    seed(urls.values())
    engines = {n: create_engine(u) for n, u in urls.items()}
    yield urls, engines
    for engine in engines.values():
        engine.dispose()


@pytest.mark.servers
class TestOnServers:
    def test_update_runs_on_each_and_commits_in_two_phases(
        self, servers, pg_primary, pg_second
    ):
        urls, engines = servers
        marks = pg_primary.log_size(), pg_second.log_size()
        with counting(engines) as sent:
            with tm_session(engines, BulkTo("default", "pg2")) as session:
                lite = session.using_bind("lite").get(Album, 1)
                result = session.execute(BULK["orm update"]())
                assert result.rowcount == 2
                # an engine outside the list keeps its objects as they were
                assert lite.title == "x"
        # one global transaction, prepared on both servers (the branches are
        # prepared on the DBAPI connections: the servers' logs tell)
        logs = pg_primary.log_text(marks[0]), pg_second.log_text(marks[1])
        prepared = [
            re.search(rf"PREPARE TRANSACTION 'dbr:(\w+):{name}'", log)
            for name, log in zip(("default", "pg2"), logs, strict=True)
        ]
        assert prepared[0] and prepared[1]
        assert prepared[0].group(1) == prepared[1].group(1)
        for name in ("default", "pg2"):
            assert [s.split()[0] for s in sent[name] if "albums" in s] == ["UPDATE"]
            assert titles(urls[name]) == [(1, "y"), (2, "z")]
        assert titles(urls["lite"]) == [(1, "x"), (2, "z")]
        assert pg_primary.prepared_transactions() == []
        assert pg_second.prepared_transactions() == []

    def test_returning_rows_of_every_engine(self, servers):
        urls, engines = servers
        with tm_session(engines, BulkTo("default", "pg2")) as session:
            statement = (
                update(Album)
                .where(Album.title != "nothing")
                .values(title=Album.title + "!")
                .returning(Album.id, Album.title)
            )
            rows = session.execute(statement).all()
            objects = session.scalars(
                update(Album).where(Album.id == 2).values(title="b").returning(Album)
            ).all()
        assert sorted(rows) == [(1, "x!"), (1, "x!"), (2, "z!"), (2, "z!")]
        assert sorted((bind_of(o), o.id, o.title) for o in objects) == [
            ("default", 2, "b"),
            ("pg2", 2, "b"),
        ]
        for name in ("default", "pg2"):
            assert titles(urls[name]) == [(1, "x!"), (2, "b")]

    def test_delete_and_legacy_query_methods(self, servers):
        urls, engines = servers
        with tm_session(engines, BulkTo("default", "pg2")) as session:
            loaded = [
                session.get(Album, 1),
                session.using_bind("pg2").get(Album, 1),
            ]
            assert (
                session.query(Album).filter(Album.id == 2).update({"title": "q"}) == 2
            )
            assert session.query(Album).filter(Album.title == "x").delete() == 2
            # each engine's object of the deleted rows left the session
            assert [o in session for o in loaded] == [False, False]
        for name in ("default", "pg2"):
            assert titles(urls[name]) == [(2, "q")]

    def test_a_fault_at_the_second_prepare_leaves_neither_changed(
        self, servers, monkeypatch, pg_primary, pg_second
    ):
        urls, engines = servers

        def fail():
            raise RuntimeError("injected before pg2's PREPARE")

        fault = inject_fault(
            monkeypatch.setattr, (Checkpoint.BEFORE_PREPARE, "pg2"), fail
        )
        with pytest.raises(RuntimeError, match="injected"):
            with tm_session(engines, BulkTo("default", "pg2")) as session:
                assert session.execute(BULK["orm delete"]()).rowcount == 2
        assert fault.fired
        for name in ("default", "pg2"):
            assert titles(urls[name]) == [(1, "x"), (2, "z")]
        assert pg_primary.prepared_transactions() == []
        assert pg_second.prepared_transactions() == []

    def test_sqlite_with_postgresql_is_the_last_resource(self, servers):
        urls, engines = servers
        with tm_session(engines, BulkTo("lite", "pg2")) as session:
            other = session.get(Album, 1)  # default's: not in the list
            assert session.execute(BULK["orm update"]()).rowcount == 2
            assert other.title == "x"
        for name in ("lite", "pg2"):
            assert titles(urls[name]) == [(1, "y"), (2, "z")]
        assert titles(urls["default"]) == [(1, "x"), (2, "z")]

    def test_a_second_sqlite_after_one_wrote_is_refused(self, servers):
        urls, engines = servers
        with counting(engines) as sent:
            with pytest.raises(
                UnsafeCommitError, match="'lite', 'lite2' cannot take part"
            ):
                with tm_session(engines, BulkTo("pg2", "lite2")) as session:
                    session.using_bind("lite").execute(BULK["core delete"]())
                    session.execute(BULK["core update"]())
        assert "pg2" not in sent and "lite2" not in sent
        assert titles(urls["lite"]) == [(1, "x"), (2, "z")]  # rolled back

    def test_the_trace_names_the_router_for_each_engine(self, servers):
        from pyramid.config import Configurator
        from pyramid.scripting import prepare

        from pyramid_dbrouter.trace import request_trace

        urls, _engines = servers
        config = Configurator(
            settings={"sqlalchemy.url": urls["lite"], "sqlalchemy.pg2.url": urls["pg2"]}
        )
        config.include("pyramid_dbrouter")
        config.include("pyramid_dbrouter.trace")
        config.add_db_router(BulkTo("default", "pg2"), name="bulk")
        config.commit()
        env = prepare(registry=config.registry)
        try:
            request = env["request"]
            with request.tm:
                request.dbsession.execute(BULK["orm update"]())
            trace = request_trace(request)
            updates = [
                (s.engine, s.rule) for s in trace.statements if "UPDATE" in s.sql
            ]
        finally:
            env["closer"]()
        assert updates == [("default", "router BulkTo"), ("pg2", "router BulkTo")]
        assert titles(urls["lite"]) == titles(urls["pg2"]) == [(1, "y"), (2, "z")]
