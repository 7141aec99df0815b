"""The sqlite-folder mode: an album is a folder holding album.sqlite."""

import os
import shutil
import sqlite3

import pytest
from sqlalchemy import select
from tenant_app import Photo

from dbrouter_tenant import (
    InvalidTenantKey,
    NoTenantError,
    TenantExists,
    UnknownTenant,
    copy_tenant,
    create_tenant,
    list_tenants,
    remove_tenant,
    tenant_scope,
)
from dbrouter_tenant.keys import path_under
from pyramid_dbrouter import session_scope

#: the fixtures of the tenant suites (album_root, folder_app, ...)
pytest_plugins = ("tenant_support",)


def titles(path):
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT title FROM photos ORDER BY id")]


def test_a_created_album_is_a_folder_with_its_own_database(folder_app, album_root):
    testapp, registry = folder_app
    assert create_tenant(registry, "summer") == "summer"
    assert (album_root / "summer" / "album.sqlite").is_file()
    testapp.post("/albums/summer/photos", {"title": "dawn"})
    assert titles(album_root / "summer" / "album.sqlite") == ["dawn"]
    assert testapp.get("/albums/summer/photos").json == {
        "album": "summer",
        "photos": ["dawn"],
    }


def test_each_album_sees_only_its_own_photos(folder_app):
    testapp, registry = folder_app
    for album in ("summer", "winter"):
        create_tenant(registry, album)
        testapp.post(f"/albums/{album}/photos", {"title": f"{album} photo"})
    assert testapp.get("/albums/summer/photos").json["photos"] == ["summer photo"]
    assert testapp.get("/albums/winter/photos").json["photos"] == ["winter photo"]


def test_an_unknown_album_is_a_404_and_no_file_is_created(
    folder_app, album_root, files_under
):
    testapp, _registry = folder_app
    testapp.get("/albums/ghost/photos", status=404)
    testapp.post("/albums/ghost/photos", {"title": "x"}, status=404)
    assert files_under(album_root) == set()


BAD_KEYS = ["..", "Summer", "a.b", "%2e%2e", "caf%C3%A9", "%D0%B0lbum", "a%20b", "a%00"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_an_invalid_album_key_is_a_404(folder_app, key):
    testapp, _registry = folder_app
    testapp.get(f"/albums/{key}/photos", status=404)


def test_a_request_naming_no_tenant_has_none(folder_app):
    testapp, _registry = folder_app
    assert testapp.get("/whoami").json == {"tenant": None}


def test_tenants_are_listed_created_once_and_removed(folder_app, album_root):
    _testapp, registry = folder_app
    for album in ("b", "a"):
        create_tenant(registry, album)
    (album_root / "not-an-album").mkdir()  # no album.sqlite in it
    (album_root / "Bad.Name").mkdir()
    assert list_tenants(registry) == ["a", "b"]
    with pytest.raises(TenantExists):
        create_tenant(registry, "a")
    remove_tenant(registry, "a")
    assert not (album_root / "a").exists()
    assert list_tenants(registry) == ["b"]
    with pytest.raises(UnknownTenant):
        remove_tenant(registry, "a")


def test_removing_an_album_closes_its_engine_first(folder_app, album_root, files_under):
    testapp, registry = folder_app
    create_tenant(registry, "gone")
    testapp.post("/albums/gone/photos", {"title": "x"})
    engines = registry["dbrouter"].engines
    assert "tenant:gone" in engines.open_dynamic_names()
    remove_tenant(registry, "gone")
    assert "tenant:gone" not in engines.open_dynamic_names()
    testapp.get("/albums/gone/photos", status=404)
    assert files_under(album_root) == set()


def test_tenant_scope_is_one_transaction_on_one_album(folder_app, album_root):
    _testapp, registry = folder_app
    create_tenant(registry, "job")
    with tenant_scope(registry, "job") as dbsession:
        dbsession.add(Photo(title="from a script"))
    assert titles(album_root / "job" / "album.sqlite") == ["from a script"]
    with pytest.raises(UnknownTenant):
        with tenant_scope(registry, "nope"):
            pass
    with pytest.raises(InvalidTenantKey):
        with tenant_scope(registry, "../job"):
            pass


def test_a_tenant_does_not_leak_from_one_job_to_the_next(folder_app):
    from concurrent.futures import ThreadPoolExecutor

    _testapp, registry = folder_app
    create_tenant(registry, "first")

    def job_with_a_tenant():
        with tenant_scope(registry, "first") as dbsession:
            dbsession.add(Photo(title="job 1"))

    def job_without_one():
        with session_scope(registry) as dbsession:
            return dbsession.scalars(select(Photo)).all()

    with ThreadPoolExecutor(max_workers=1) as pool:  # one thread runs both jobs
        pool.submit(job_with_a_tenant).result()
        with pytest.raises(NoTenantError):
            pool.submit(job_without_one).result()


def test_a_failing_job_does_not_leak_its_tenant_either(folder_app):
    _testapp, registry = folder_app
    create_tenant(registry, "first")
    with pytest.raises(RuntimeError):
        with tenant_scope(registry, "first"):
            raise RuntimeError("the job failed")
    with pytest.raises(NoTenantError), session_scope(registry) as dbsession:
        dbsession.scalars(select(Photo)).all()


def test_scopes_nest_and_the_outer_tenant_comes_back(folder_app, album_root):
    _testapp, registry = folder_app
    for album in ("outer", "inner"):
        create_tenant(registry, album)
    with tenant_scope(registry, "outer") as outer:
        with tenant_scope(registry, "inner") as inner:
            inner.add(Photo(title="in inner"))
        outer.add(Photo(title="in outer"))
    assert titles(album_root / "outer" / "album.sqlite") == ["in outer"]
    assert titles(album_root / "inner" / "album.sqlite") == ["in inner"]


def test_an_album_moved_while_open_is_not_written_at_its_old_path(
    folder_app, album_root
):
    testapp, registry = folder_app
    create_tenant(registry, "trip")
    testapp.post("/albums/trip/photos", {"title": "before"})  # engine and pool open
    os.rename(album_root / "trip", album_root / "trip-2019")
    testapp.post("/albums/trip/photos", {"title": "after"}, status=404)
    assert not (album_root / "trip").exists()  # nothing re-created at the old path
    assert titles(album_root / "trip-2019" / "album.sqlite") == ["before"]
    assert testapp.get("/albums/trip-2019/photos").json["photos"] == ["before"]


def test_an_album_replaced_under_an_open_engine_is_opened_anew(folder_app, album_root):
    testapp, registry = folder_app
    for album in ("a", "b"):
        create_tenant(registry, album)
        testapp.post(f"/albums/{album}/photos", {"title": f"in {album}"})
    # b's folder is replaced by a copy of a while b's engine holds a connection
    shutil.rmtree(album_root / "b")
    shutil.copytree(album_root / "a", album_root / "b")
    testapp.post("/albums/b/photos", {"title": "new in b"})
    assert titles(album_root / "b" / "album.sqlite") == ["in a", "new in b"]
    assert titles(album_root / "a" / "album.sqlite") == ["in a"]


def test_copy_tenant_copies_an_album_consistently(folder_app, album_root):
    testapp, registry = folder_app
    create_tenant(registry, "orig")
    testapp.post("/albums/orig/photos", {"title": "p"})
    copy_tenant(registry, "orig", "copy")
    assert testapp.get("/albums/copy/photos").json["photos"] == ["p"]
    with pytest.raises(TenantExists):
        copy_tenant(registry, "orig", "copy")


def test_an_album_file_symlinked_outside_the_root_is_refused(
    folder_app, album_root, tmp_path
):
    testapp, registry = folder_app
    outside = tmp_path / "secret.sqlite"
    sqlite3.connect(outside).execute("CREATE TABLE photos (id, title)")
    (album_root / "innocent").mkdir()
    os.symlink(outside, album_root / "innocent" / "album.sqlite")
    testapp.get("/albums/innocent/photos", status=404)
    assert "innocent" not in list_tenants(registry)


def test_paths_are_checked_on_what_they_resolve_to(album_root):
    root = os.path.realpath(album_root)
    (album_root / "alps").mkdir()
    (album_root / "alps" / "album.sqlite").touch()
    # no link: the path itself (found without realpath's walk)
    assert path_under(root, "alps", "album.sqlite") == f"{root}/alps/album.sqlite"
    # a link to another folder under the root: where it points
    os.symlink(album_root / "alps", album_root / "alias")
    assert path_under(root, "alias", "album.sqlite") == f"{root}/alps/album.sqlite"
    # a link out, whatever the depth; and names that are not names
    os.symlink("/etc", album_root / "alps" / "etc")
    for parts in [("alps", "etc", "passwd"), ("..",), ("alps", ".."), ("",), ()]:
        with pytest.raises(InvalidTenantKey):
            path_under(root, *parts)


def test_a_symlinked_album_pointing_outside_the_root_is_refused(
    folder_app, album_root, tmp_path
):
    testapp, registry = folder_app
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    sqlite3.connect(outside / "album.sqlite").execute("CREATE TABLE photos (id, title)")
    os.symlink(outside, album_root / "escape")
    testapp.get("/albums/escape/photos", status=404)
    assert "escape" not in list_tenants(registry)
    with pytest.raises(InvalidTenantKey):
        remove_tenant(registry, "escape")
    assert (outside / "album.sqlite").exists()
