"""``dbrouter.tenant.attach = true``: two albums written in one request are
committed together, through one SQLite connection with both files attached.

Without it the core refuses the request (SQLite cannot prepare); with it,
a failure anywhere -- a statement, the COMMIT itself -- leaves both albums
as they were.  The process-kill figures are in test_tenant_attach_kills.py.
"""

import os
import sqlite3

import pytest
import webtest
from pyramid.exceptions import ConfigurationError
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError
from tenant_app import Photo, make_app

from dbrouter_tenant import create_tenant, get_tenancy, list_tenants, tenant_scope
from dbrouter_tenant.attach import HUB_FILENAME, AttachLimitError
from pyramid_dbrouter import UnsafeCommitError, session_scope

pytest_plugins = ("tenant_support",)


def titles(root, album):
    path = root / album / "album.sqlite"
    with sqlite3.connect(f"file:{path}?mode=rw", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT title FROM photos ORDER BY id")]


@pytest.fixture
def attach_app(folder_settings):
    """``(testapp, registry)`` of the album application, albums attached."""
    app = make_app({**folder_settings, "dbrouter.tenant.attach": "true"})
    yield webtest.TestApp(app), app.registry
    app.registry["dbrouter"].engines.dispose()
    get_tenancy(app.registry).mode.dispose()


def albums(registry, *keys):
    for key in keys:
        create_tenant(registry, key)
        with tenant_scope(registry, key) as session:
            session.add(Photo(id=1, title=f"first of {key}"))


def test_copying_to_another_album_commits_both(attach_app, album_root):
    testapp, registry = attach_app
    albums(registry, "a", "b")
    testapp.post("/albums/a/both", {"to": "b", "title": "together"})
    assert titles(album_root, "a") == ["first of a", "together"]
    assert titles(album_root, "b") == ["first of b", "together"]
    # the hub lives in the root, and is not an album
    assert (album_root / HUB_FILENAME).is_file()
    assert list_tenants(registry) == ["a", "b"]


def test_the_readme_example_moves_a_photo_to_another_album(attach_app, album_root):
    testapp, registry = attach_app
    albums(registry, "a", "b")
    answer = testapp.post("/albums/a/move", {"id": "1", "to": "b"}).json
    assert answer == {"moved": "first of a"}
    assert titles(album_root, "b") == ["first of b", "first of a"]
    assert titles(album_root, "a") == []


def test_without_attach_the_core_refuses_two_albums(folder_app, album_root):
    testapp, registry = folder_app
    albums(registry, "a", "b")
    with pytest.raises(UnsafeCommitError, match="'tenant:a', 'tenant:b'"):
        testapp.post("/albums/a/both", {"to": "b", "title": "together"})
    assert titles(album_root, "a") == ["first of a"]
    assert titles(album_root, "b") == ["first of b"]


def test_a_failing_second_write_leaves_both_albums_unchanged(attach_app, album_root):
    testapp, registry = attach_app
    albums(registry, "a", "b")
    # b already has a photo 1: the second INSERT fails after a's succeeded
    with pytest.raises(IntegrityError):
        testapp.post("/albums/a/both", {"to": "b", "title": "never", "id": "1"})
    assert titles(album_root, "a") == ["first of a"]
    assert titles(album_root, "b") == ["first of b"]
    testapp.post("/albums/a/both", {"to": "b", "title": "then"})  # still usable
    assert titles(album_root, "b") == ["first of b", "then"]


def test_a_failing_commit_leaves_both_albums_unchanged(attach_app, album_root):
    """The COMMIT fails on b (a reader holds it), after SQLite may have
    written a's pages: a is rolled back from its journal."""
    testapp, registry = attach_app
    albums(registry, "a", "b")
    hub = get_tenancy(registry).mode.hub.hub
    # fail at once instead of waiting 5 s for the reader to go
    event.listen(
        hub, "checkout", lambda dbapi, *_: dbapi.execute("PRAGMA busy_timeout = 0")
    )
    reader = sqlite3.connect(album_root / "b" / "album.sqlite", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM photos").fetchall()  # a SHARED lock
        with pytest.raises(OperationalError, match="locked"):
            testapp.post("/albums/a/both", {"to": "b", "title": "never"})
    finally:
        reader.close()
    assert titles(album_root, "a") == ["first of a"]
    assert titles(album_root, "b") == ["first of b"]
    assert not os.path.exists(album_root / "a" / "album.sqlite-journal")


def test_textual_sql_naming_an_album_table_is_an_error(attach_app, album_root):
    """SQLite would look ``photos`` up in the first album attached, whichever
    tenant the statement was meant for: the hub makes it an error."""
    _testapp, registry = attach_app
    albums(registry, "a", "b")
    with session_scope(registry) as session:
        assert session.using_bind("tenant:a").get(Photo, 1).title == "first of a"
        b = session.using_bind("tenant:b")
        assert b.get(Photo, 1).title == "first of b"
        with pytest.raises(OperationalError, match="textual SQL is not mapped"):
            b.execute(text("SELECT title FROM photos"))


def test_more_albums_than_sqlite_attaches_are_refused_and_nothing_is_committed(
    attach_app, album_root
):
    _testapp, registry = attach_app
    keys = [f"album{i}" for i in range(11)]
    albums(registry, *keys)
    with pytest.raises(AttachLimitError, match="at most 10 databases") as info:
        with session_scope(registry) as session:
            for key in keys:
                with session.using_bind(f"tenant:{key}"):
                    session.add(Photo(title="copy"))
                session.flush()
    assert "SQLITE_LIMIT_ATTACHED" in str(info.value)
    assert all(titles(album_root, key) == [f"first of {key}"] for key in keys)


def test_an_album_in_wal_mode_is_refused(attach_app, album_root):
    testapp, registry = attach_app
    albums(registry, "a", "b")
    with sqlite3.connect(album_root / "b" / "album.sqlite") as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    with pytest.raises(UnsafeCommitError, match="album 'b' .* is in WAL mode"):
        testapp.post("/albums/a/both", {"to": "b", "title": "never"})
    assert titles(album_root, "a") == ["first of a"]


def test_an_album_moved_between_requests_is_not_written_at_its_old_path(
    attach_app, album_root
):
    testapp, registry = attach_app
    albums(registry, "a", "b")
    testapp.post("/albums/a/both", {"to": "b", "title": "before"})
    os.rename(album_root / "b", album_root / "b-2019")
    testapp.post("/albums/b/photos", {"title": "after"}, status=404)
    # the folder is looked up again by each transaction (mode=rw: not created)
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        testapp.post("/albums/a/both", {"to": "b", "title": "after"})
    assert not (album_root / "b").exists()
    assert titles(album_root, "b-2019") == ["first of b", "before"]
    assert titles(album_root, "a") == ["first of a", "before"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"dbrouter.tenant.attach": "maybe"},
            "dbrouter.tenant.attach: 'maybe' is not a boolean",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.root": None},
            "dbrouter.tenant.attach: 'true' does not apply to the schema mode",
        ),
    ],
)
def test_a_bad_attach_setting_is_refused_at_start_up(
    folder_settings, settings, message
):
    settings = {**folder_settings, "dbrouter.tenant.attach": "true", **settings}
    with pytest.raises(ConfigurationError) as info:
        make_app({k: v for k, v in settings.items() if v is not None})
    assert message in str(info.value)


def test_init_db_all_tenants_creates_the_tables_in_each_album(
    tmp_path, album_root, capsys
):
    from pyramid_dbrouter.cli import main

    for album in ("a", "b", "c"):
        (album_root / album).mkdir()
        sqlite3.connect(album_root / album / "album.sqlite").close()
    ini = tmp_path / "app.ini"
    ini.write_text(
        "[app:main]\n"
        "use = call:tenant_app:main\n"
        f"sqlalchemy.url = sqlite:///{tmp_path}/shared.sqlite\n"
        "dbrouter.tenant.mode = sqlite-folder\n"
        f"dbrouter.tenant.root = {album_root}\n"
        "dbrouter.tenant.attach = true\n"
    )
    assert main(["init-db", str(ini), "--all-tenants", "--jobs", "2"]) == 0
    assert "all tenants: 3 of 3 done" in capsys.readouterr().out
    for album in ("a", "b", "c"):
        assert titles(album_root, album) == []  # the table is there, empty
    with sqlite3.connect(album_root / HUB_FILENAME) as hub:
        kinds = dict(hub.execute("SELECT name, type FROM sqlite_master"))
    assert kinds == {"photos": "view"}  # the decoy only: no table in the hub


def test_a_second_session_on_albums_in_the_same_thread_is_refused(
    attach_app, album_root
):
    """Both would share the thread's hub connection, and the inner commit
    would commit the outer session's writes: refused, nothing committed."""
    _testapp, registry = attach_app
    albums(registry, "a", "b")
    # the outer session's connection is closed under it: it fails too
    with pytest.raises(PendingRollbackError, match="invalid transaction"):
        with session_scope(registry) as outer:
            with outer.using_bind("tenant:a"):
                outer.add(Photo(title="outer"))
            outer.flush()
            with pytest.raises(UnsafeCommitError, match="a second session used"):
                with tenant_scope(registry, "b") as inner:
                    inner.add(Photo(title="inner"))
    assert titles(album_root, "a") == ["first of a"]
    assert titles(album_root, "b") == ["first of b"]
    # and the thread's next session starts afresh
    with tenant_scope(registry, "b") as session:
        session.add(Photo(title="later"))
    assert titles(album_root, "b") == ["first of b", "later"]
