"""No write is lost: every way of writing commits with the transaction.

A session joined to a transaction manager commits only when it knows it has
work to commit (zope.sqlalchemy's rule).  Each row of the table below writes
one way -- a statement routed by an explicit bind, an execution option,
``using_bind`` or a router; ORM and Core statements, textual SQL, the legacy
``Query`` methods and the bulk methods -- in an application with one engine
and in one with two, and the file is then read directly: the change must be
there, exactly as a plain SQLAlchemy ``Session`` that commits would leave it.
"""

import shutil

import pytest
import transaction
from sqlalchemy import create_engine, delete, insert, text, update
from sqlalchemy.orm import Session

from pyramid_dbrouter import get_session_factory, get_tm_session
from sample import Album, Base, EverythingTo, rows

albums = Album.__table__

#: one statement each, all writing to the albums table
STATEMENTS = {
    "core update": lambda: update(albums).where(albums.c.id == 1).values(title="new"),
    "core insert": lambda: insert(albums).values(id=2, title="new"),
    "core delete": lambda: delete(albums).where(albums.c.id == 1),
    "orm update": lambda: update(Album).where(Album.id == 1).values(title="new"),
    "orm delete": lambda: delete(Album).where(Album.id == 1),
    "orm insert": lambda: insert(Album).values(id=2, title="new"),
    "text update": lambda: text("UPDATE albums SET title = 'new' WHERE id = 1"),
}


def _explicit_bind(session, engine, name, statement):
    session.execute(statement, bind_arguments={"bind": engine})


def _execution_option(session, engine, name, statement):
    session.execute(statement.execution_options(dbrouter_bind=name))


def _using_bind(session, engine, name, statement):
    session.using_bind(name).execute(statement)


def _using_bind_block(session, engine, name, statement):
    with session.using_bind(name):
        session.execute(statement)


def _router(session, engine, name, statement):
    session.execute(statement)  # the session's router sends it to *name*


#: how the statement finds its engine
ROUTES = {
    "explicit bind": _explicit_bind,
    "execution option": _execution_option,
    "using_bind": _using_bind,
    "using_bind block": _using_bind_block,
    "router": _router,
}


def _query_update(session):
    session.query(Album).filter(Album.id == 1).update({"title": "new"})


def _query_delete(session):
    session.query(Album).filter(Album.id == 1).delete()


def _bulk_insert_mappings(session):
    session.bulk_insert_mappings(Album, [{"id": 2, "title": "new"}])


def _bulk_update_mappings(session):
    session.bulk_update_mappings(Album, [{"id": 1, "title": "new"}])


def _bulk_save_new(session):
    session.bulk_save_objects([Album(id=2, title="new")])


def _orm_bulk_insert_many(session):
    session.execute(insert(Album), [{"id": 2, "title": "new"}, {"id": 3, "title": "x"}])


def _orm_bulk_update_by_pk(session):
    session.execute(update(Album), [{"id": 1, "title": "new"}])


def _add_and_flush(session):
    session.add(Album(id=2, title="new"))


#: session methods that write without a statement of the caller's
METHODS = {
    "query update": _query_update,
    "query delete": _query_delete,
    "bulk_insert_mappings": _bulk_insert_mappings,
    "bulk_update_mappings": _bulk_update_mappings,
    "bulk_save_objects": _bulk_save_new,
    "orm bulk insert": _orm_bulk_insert_many,
    "orm bulk update by primary key": _orm_bulk_update_by_pk,
    "add": _add_and_flush,
}

#: (engines of the application, the one written to)
APPS = {
    "one engine": (("default",), "default"),
    "two engines, write to default": (("default", "other"), "default"),
    "two engines, write to other": (("default", "other"), "other"),
}


@pytest.fixture
def make_app(tmp_path):
    """``make(app)`` -> (session, engines, path of each engine's file, oracle)."""
    made = []

    def make(app):
        names, target = APPS[app]
        paths = {name: str(tmp_path / f"{name}.db") for name in names}
        engines = {}
        for name, path in paths.items():
            engines[name] = create_engine(f"sqlite:///{path}")
            made.append(engines[name])
            Base.metadata.create_all(engines[name])
            with engines[name].begin() as conn:
                conn.execute(insert(albums).values(id=1, title="old"))
        oracle = str(tmp_path / "oracle.db")
        shutil.copy(paths[target], oracle)
        manager = transaction.TransactionManager(explicit=True)
        manager.begin()
        factory = get_session_factory(engines, [EverythingTo(target)])
        session = get_tm_session(factory, manager)
        return session, manager, engines[target], target, paths, oracle

    yield make
    for engine in made:
        engine.dispose()


def _albums(path):
    return rows(path, "SELECT id, title FROM albums ORDER BY id")


def _oracle(path, write):
    """What a plain Session that commits leaves in a copy of the file."""
    engine = create_engine(f"sqlite:///{path}")
    with Session(engine) as session:
        write(session)
        session.commit()
    engine.dispose()
    return _albums(path)


def _check(paths, target, oracle_rows, manager):
    manager.commit()
    assert _albums(paths[target]) == oracle_rows
    assert oracle_rows != [(1, "old")]  # the write changed something
    for name, path in paths.items():
        if name != target:
            assert _albums(path) == [(1, "old")], f"{name} was written to"


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", STATEMENTS)
def test_a_statement_written_any_way_is_committed(make_app, app, route, kind):
    session, manager, engine, target, paths, oracle = make_app(app)
    ROUTES[route](session, engine, target, STATEMENTS[kind]())
    expected = _oracle(oracle, lambda s: s.execute(STATEMENTS[kind]()))
    _check(paths, target, expected, manager)


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("pinned", [False, True], ids=["router", "using_bind block"])
@pytest.mark.parametrize("method", METHODS)
def test_a_session_method_that_writes_is_committed(make_app, app, pinned, method):
    session, manager, engine, target, paths, oracle = make_app(app)
    if pinned:
        with session.using_bind(target):
            METHODS[method](session)
            session.flush()
    else:
        METHODS[method](session)
    expected = _oracle(oracle, METHODS[method])
    _check(paths, target, expected, manager)


@pytest.mark.parametrize("app", APPS)
def test_a_write_on_the_sessions_connection_needs_mark_changed(make_app, app):
    """As with zope.sqlalchemy: SQL sent on ``session.connection()`` goes
    around the session, which cannot see it; ``mark_changed`` says so."""
    from zope.sqlalchemy import mark_changed

    session, manager, engine, target, paths, oracle = make_app(app)
    connection = session.connection(bind_arguments={"bind": engine})
    connection.execute(STATEMENTS["core update"]())
    mark_changed(session)
    _check(paths, target, [(1, "new")], manager)
