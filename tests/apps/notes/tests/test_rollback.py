"""Rows written in one test are gone in the next, on every engine.

The two tests run in this order (pytest keeps a module's order): the first
writes to ``default``, ``archive`` and ``tenant:acme``, through requests and
through ``dbsession``; the second reads each database file afresh.
"""

import sqlite3
from pathlib import Path

from notes_app import ArchivedNote, Note, Photo
from sqlalchemy import func, select

from pyramid_dbrouter import get_engines

ENGINES = ("default", "archive", "tenant:acme")


def count(dbsession, model, engine):
    statement = select(func.count()).select_from(model)
    return dbsession.using_bind(engine).scalar(statement)


def test_1_writes_on_every_engine(testapp, dbsession):
    testapp.post("/notes", {"text": "hello"})
    testapp.post("/archive", {"text": "old"})
    testapp.post("/albums/acme/photos", {"title": "dawn"})
    dbsession.add(Note(text="direct"))
    dbsession.flush()

    assert testapp.get("/notes").json == ["hello", "direct"]
    assert testapp.get("/albums/acme/photos").json["photos"] == ["dawn"]
    assert count(dbsession, ArchivedNote, "archive") == 1


def test_2_they_are_gone_on_every_engine(app, app_settings, dbsession):
    assert count(dbsession, Note, "default") == 0
    assert count(dbsession, ArchivedNote, "archive") == 0
    assert count(dbsession, Photo, "tenant:acme") == 0
    # and in the files themselves, read without the application
    engines = get_engines(app.registry)
    files = {
        "default": (engines["default"].url.database, "notes"),
        "archive": (engines["archive"].url.database, "archived_notes"),
        "tenant:acme": (
            Path(app_settings["dbrouter.tenant.root"], "acme", "album.sqlite"),
            "photos",
        ),
    }
    for path, table in files.values():
        with sqlite3.connect(path) as conn:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
