"""Coming from zope.sqlalchemy: ``register`` and its options.

``pyramid_dbrouter.register(session, initial_state=..., transaction_manager=...,
keep_session=...)`` takes zope.sqlalchemy's arguments, with its meanings, for
a routing session or a factory of them.
"""

import pytest
import transaction
from sqlalchemy import select, update

from pyramid_dbrouter import DBRouterError, get_session_factory, register
from sample import Album, rows


@pytest.fixture
def engines(sqlite_engines):
    return sqlite_engines("default", "other")


@pytest.fixture
def tm():
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    yield manager
    try:
        manager.abort()
    except transaction.interfaces.NoTransaction:
        pass


def titles(path):
    return rows(path, "SELECT title FROM albums ORDER BY id")


@pytest.mark.parametrize("names", [("default",), ("default", "other")])
def test_keep_session_keeps_objects_usable_after_commit(sqlite_engines, tm, names):
    engines = sqlite_engines(*names)
    session = get_session_factory(engines)()
    register(session, transaction_manager=tm, keep_session=True)
    album = Album(id=1, title="dawn")
    session.add(album)
    tm.commit()
    assert session.is_active
    tm.begin()
    assert album.title == "dawn"  # reloaded, in the new transaction
    album.title = "dusk"
    tm.commit()
    tm.begin()
    assert session.get(Album, 1) is album and album.title == "dusk"


def test_without_keep_session_the_session_is_closed(engines, tm):
    session = get_session_factory(engines)()
    register(session, transaction_manager=tm)
    album = Album(id=1, title="dawn")
    session.add(album)
    tm.commit()
    assert album not in session  # closed: its objects are detached


def test_initial_state_changed_commits_writes_the_session_cannot_see(
    engines, tm, db_path
):
    with engines["default"].begin() as conn:
        conn.execute(Album.__table__.insert().values(id=1, title="old"))
    session = get_session_factory(engines)()
    register(session, initial_state="changed", transaction_manager=tm)
    session.connection().execute(update(Album).values(title="new"))
    tm.commit()
    assert titles(db_path("default")) == [("new",)]


def test_by_default_such_writes_need_mark_changed(engines, tm, db_path):
    with engines["default"].begin() as conn:
        conn.execute(Album.__table__.insert().values(id=1, title="old"))
    session = get_session_factory(engines)()
    register(session, transaction_manager=tm)
    session.connection().execute(update(Album).values(title="new"))
    tm.commit()
    assert titles(db_path("default")) == [("old",)]


def test_a_factory_can_be_registered_for_all_its_sessions(engines, tm, db_path):
    factory = register(get_session_factory(engines), transaction_manager=tm)
    factory().add(Album(id=1, title="from a registered factory"))
    tm.commit()
    assert titles(db_path("default")) == [("from a registered factory",)]


def test_read_only_sessions_commit_nothing(engines, tm, db_path):
    session = get_session_factory(engines)()
    register(session, initial_state="readonly", transaction_manager=tm)
    session.scalars(select(Album)).all()
    tm.commit()
    assert titles(db_path("default")) == []


def test_an_unknown_initial_state_is_refused(engines, tm):
    with pytest.raises(ValueError, match="initial_state='dirty'"):
        register(get_session_factory(engines)(), initial_state="dirty")


def test_twophase_true_is_refused_with_the_setting_to_use(engines):
    with pytest.raises(TypeError, match="dbrouter.twophase"):
        get_session_factory(engines, twophase=True)


def test_session_commit_under_a_manager_is_refused(engines, tm, db_path):
    """zope.sqlalchemy raises AssertionError here; this is a DBRouterError."""
    session = get_session_factory(engines)()
    register(session, transaction_manager=tm)
    session.add(Album(id=1, title="x"))
    with pytest.raises(DBRouterError, match="commit with the manager"):
        session.commit()
    tm.abort()
    assert titles(db_path("default")) == []
