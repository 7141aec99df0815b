"""A Pyramid application with three engines and Django's two example routers.

``auth_db`` holds the auth application's models (AuthRouter); everything
else is written to the primary, ``default``, and read from ``replica``
(PrimaryReplicaRouter).  Each check opens the SQLite files directly.
"""

import sqlite3

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.view import view_config
from sqlalchemy import select, text

from pyramid_dbrouter import UnsafeCommitError
from sample import Album, User, rows


@view_config(route_name="users", request_method="POST", renderer="json")
def add_user(request):
    user = User(name=request.params["name"])
    request.dbsession.add(user)
    request.dbsession.flush()
    return {"id": user.id}


@view_config(route_name="users", request_method="GET", renderer="json")
def list_users(request):
    return [u.name for u in request.dbsession.scalars(select(User).order_by(User.id))]


@view_config(route_name="albums", request_method="POST", renderer="json")
def add_album(request):
    request.dbsession.add(Album(title=request.params["title"]))
    return {"ok": True}


@view_config(route_name="albums", request_method="GET", renderer="json")
def list_albums(request):
    return [
        a.title for a in request.dbsession.scalars(select(Album).order_by(Album.id))
    ]


@view_config(route_name="signup", request_method="POST", renderer="json")
def signup(request):
    # a user (auth_db) and their first album (default): two SQLite writers
    request.dbsession.add(User(name=request.params["name"]))
    request.dbsession.add(Album(title=f"{request.params['name']}'s album"))
    return {"ok": True}


@view_config(route_name="archive_sql", request_method="POST", renderer="json")
def archive_sql(request):
    request.dbsession.execute(
        text("INSERT INTO albums (title) VALUES (:title)"),
        {"title": request.params["title"]},
    )
    return {"ok": True}


def make_app(settings):
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.add_route("users", "/users")
        config.add_route("albums", "/albums")
        config.add_route("signup", "/signup")
        config.add_route("archive_sql", "/sql/albums")
        config.scan(__name__)
    return config.make_wsgi_app()


@pytest.fixture
def paths(tmp_path):
    return {
        name: str(tmp_path / f"{name}.db") for name in ("default", "auth_db", "replica")
    }


@pytest.fixture
def app(paths):
    settings = {
        "sqlalchemy.url": f"sqlite:///{paths['default']}",
        "sqlalchemy.auth_db.url": f"sqlite:///{paths['auth_db']}",
        "sqlalchemy.replica.url": f"sqlite:///{paths['replica']}",
        "dbrouter.routers": "sample.AuthRouter\n sample.PrimaryReplicaRouter",
        "dbrouter.metadata": "sample.Base",
    }
    wsgi = make_app(settings)
    from pyramid_dbrouter import init_db

    created = init_db(wsgi.registry)
    assert "users" not in created["default"] and "users" in created["auth_db"]
    assert "albums" in created["replica"]
    yield webtest.TestApp(wsgi)
    for engine in wsgi.registry["dbrouter"].engines.static_items():
        engine[1].dispose()


def test_auth_models_are_written_to_auth_db(app, paths):
    assert app.post("/users", {"name": "ann"}).json == {"id": 1}
    assert rows(paths["auth_db"], "select id, name from users") == [(1, "ann")]
    assert app.get("/users").json == ["ann"]  # AuthRouter reads auth_db too


def test_other_models_are_written_to_the_primary(app, paths):
    app.post("/albums", {"title": "summer"})
    assert rows(paths["default"], "select title from albums") == [("summer",)]
    assert rows(paths["replica"], "select count(*) from albums") == [(0,)]


def test_other_models_are_read_from_the_replica(app, paths):
    app.post("/albums", {"title": "written to the primary"})
    assert app.get("/albums").json == []  # the replica has not caught up
    # replication, by hand
    with sqlite3.connect(paths["replica"]) as conn:
        conn.execute("insert into albums (id, title) values (1, 'replicated')")
    assert app.get("/albums").json == ["replicated"]


def test_writing_two_sqlite_engines_in_one_request_changes_neither(app, paths):
    with pytest.raises(UnsafeCommitError, match="'auth_db', 'default'"):
        app.post("/signup", {"name": "bob"})
    assert rows(paths["auth_db"], "select count(*) from users") == [(0,)]
    assert rows(paths["default"], "select count(*) from albums") == [(0,)]
    # the application goes on serving
    app.post("/users", {"name": "bob"})
    assert rows(paths["auth_db"], "select name from users") == [("bob",)]


def test_textual_sql_is_asked_of_db_for_write(app, paths):
    app.post("/sql/albums", {"title": "raw"})
    assert rows(paths["default"], "select title from albums") == [("raw",)]


def test_an_error_in_the_view_commits_nothing(app, paths):
    with pytest.raises(KeyError):
        app.post("/users", {})
    assert rows(paths["auth_db"], "select count(*) from users") == [(0,)]
