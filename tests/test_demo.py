"""The demo application (development.ini's), page by page, with WebTest.

Every page and form, the bad inputs of the issue (unknown album, a
path-traversal album name, empty forms, archiving twice), and the routing
each page shows.  The browser suite is tests/test_demo_browser.py.
"""

import os

import pytest
import webtest

from demo_app import close_demo, make_demo, toolbar_url
from pyramid_dbrouter import get_state
from sample import rows


@pytest.fixture
def demo(tmp_path):
    app = make_demo(tmp_path)
    yield webtest.TestApp(app)
    close_demo(app)


def album_file(tmp_path, key):
    return str(tmp_path / "albums" / key / "album.sqlite")


def add_album(demo, key="alps", title="Alps 2026"):
    return demo.post("/albums/new", {"title": title, "key": key}).follow()


def add_pic(demo, title, taken="2026-01-02", tags="", key="alps"):
    form = {"title": title, "taken": taken, "tags": tags}
    return demo.post(f"/albums/{key}/pics", form).follow()


def routing(page):
    """The footer's rows: (engine, rule) of each query of the page."""
    return [
        tuple(td.get_text() for td in tr.select("td")[:2])
        for tr in page.html.select("footer table.routing tr")[1:]
    ]


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder)
        for d, _dirs, files in os.walk(folder)
        for f in files
    )


def test_the_albums_page_lists_the_catalog_and_shows_its_routing(demo):
    page = demo.get("/")
    assert "No album yet." in page.text
    assert "__bind_key__ of Album" in page.text  # the footer: engine and rule
    add_album(demo, "alps", "Alps <2026>")
    add_album(demo, "sea", "Sea")
    page = demo.get("/")
    assert "Alps &lt;2026&gt;" in page.text and 'href="/albums/sea"' in page.text
    assert page.text.index("Alps &lt;2026&gt;") < page.text.index(">Sea<")


def test_creating_an_album_makes_its_folder_and_its_catalog_row(demo, tmp_path):
    assert "Create the album" in demo.get("/albums/new").text
    page = add_album(demo)
    assert page.request.path == "/albums/alps"
    assert "No picture in this album." in page.text
    assert os.path.exists(album_file(tmp_path, "alps"))
    catalog = f"{tmp_path}/catalog.sqlite"
    assert rows(catalog, "select key, title from album") == [("alps", "Alps 2026")]
    # the page after the redirect tells how the POST committed
    assert "POST /albums/new: <strong>one-phase commit of default" in page.text


@pytest.mark.parametrize(
    "form, error",
    [
        ({"title": "", "key": ""}, "Give the album a title and a folder name."),
        ({"title": "Alps", "key": ""}, "Give the album a title and a folder name."),
        ({"title": "Alps", "key": "../etc"}, "cannot name a folder"),
        ({"title": "Alps", "key": "Alps"}, "cannot name a folder"),
    ],
)
def test_a_bad_album_form_comes_back_with_an_error(demo, tmp_path, form, error):
    page = demo.post("/albums/new", form, status=400)
    assert error in page.html.get_text() and 'name="title"' in page.text
    assert files_under(tmp_path / "albums") == []
    assert rows(f"{tmp_path}/catalog.sqlite", "select key from album") == []


def test_an_album_cannot_be_created_twice(demo, tmp_path):
    add_album(demo)
    page = demo.post("/albums/new", {"title": "Again", "key": "alps"}, status=400)
    assert "There is already an album in folder 'alps'." in page.html.get_text()
    assert rows(f"{tmp_path}/catalog.sqlite", "select title from album") == [
        ("Alps 2026",)
    ]


def test_pictures_and_tags_are_written_to_the_albums_own_database(demo, tmp_path):
    add_album(demo)
    add_pic(demo, "Sunrise", "2026-01-02", "Snow, mountain")
    page = add_pic(demo, "Lake", "2026-01-03", "snow, water")
    assert page.text.index("Lake") < page.text.index("Sunrise")  # newest first
    assert '<span class="tag">mountain</span>' in page.text
    album = album_file(tmp_path, "alps")
    assert rows(album, "select title from pic order by id") == [
        ("Sunrise",),
        ("Lake",),
    ]
    # "snow" is one tag, linked to both pictures
    assert rows(album, "select name from tag order by name") == [
        ("mountain",),
        ("snow",),
        ("water",),
    ]
    assert len(rows(album, "select * from pic_tag")) == 4
    # which engine answered, and why
    assert ("tenant:alps", "router TenantRouter") in routing(page)
    assert ("tenant:alps", "loaded from tenant:alps") in routing(page)  # tags
    assert "one-phase commit of tenant:alps" in page.text


@pytest.mark.parametrize(
    "form, error",
    [
        ({"title": "", "taken": "2026-01-02", "tags": ""}, "Give the picture a title"),
        ({"title": "Dawn", "taken": "", "tags": ""}, "Give the day the picture"),
        ({"title": "Dawn", "taken": "2026-01-02", "tags": "<b>"}, "Tags are up to"),
    ],
)
def test_a_bad_picture_form_comes_back_with_an_error(demo, tmp_path, form, error):
    add_album(demo)
    page = demo.post("/albums/alps/pics", form, status=400)
    assert error in page.html.get_text() and "Add the picture" in page.text
    assert rows(album_file(tmp_path, "alps"), "select * from pic") == []


def test_a_picture_page(demo):
    add_album(demo)
    add_pic(demo, "Sunrise", "2026-01-02", "snow")
    page = demo.get("/albums/alps").click("Sunrise")
    assert "<h1>Sunrise</h1>" in page.text and "found in the album" in page.text
    demo.get("/albums/alps/pics/99", status=404)
    demo.get("/albums/alps/pics/x", status=404)


def test_an_unknown_album_is_a_404(demo):
    demo.get("/albums/nowhere", status=404)
    demo.get("/albums/nowhere/archive", status=404)
    demo.post("/albums/nowhere/pics", {"title": "x", "taken": "2026-01-01"}, status=404)


@pytest.mark.parametrize(
    "path",
    [
        "/albums/..",
        "/albums/%2E%2E",
        "/albums/..%2F..%2Fetc",
        "/albums/%2Fetc%2Fpasswd",
        "/albums/alps%00",
        "/albums/ALPS",
        "/albums/..%5C..%5Cwindows",
    ],
)
def test_a_path_traversal_album_name_is_a_404_and_touches_no_file(demo, tmp_path, path):
    add_album(demo)
    before = files_under(tmp_path)
    demo.get(path, status=404)
    demo.post(path + "/pics", {"title": "x", "taken": "2026-01-01"}, status=404)
    assert files_under(tmp_path) == before


def test_search_fans_out_over_every_album_ordered_and_paged(demo):
    add_album(demo, "alps")
    add_album(demo, "sea")
    for day in range(1, 13):  # 24 snowy pictures, alternately in each album
        key = "alps" if day % 2 else "sea"
        add_pic(demo, f"Snow {day:02}", f"2026-01-{day:02}", "winter", key=key)
        add_pic(demo, f"Sun {day:02}", f"2026-02-{day:02}", "snow", key=key)
    add_pic(demo, "Beach", "2026-03-01", "sand", key="sea")
    page = demo.get("/search", {"q": "snow"})
    titles = [a.text for a in page.html.select("table.list td:first-child a")]
    assert titles == [f"Sun {d:02}" for d in range(12, 2, -1)]
    assert "router EveryAlbumRouter" in page.text
    assert ("tenant:alps", "router EveryAlbumRouter") in routing(page)
    assert ("tenant:sea", "router EveryAlbumRouter") in routing(page)
    page = page.click("next")
    titles = [a.text for a in page.html.select("table.list td:first-child a")]
    assert titles == ["Sun 02", "Sun 01", *[f"Snow {d:02}" for d in range(12, 4, -1)]]
    page = demo.get("/search", {"q": "snow", "page": "3"})
    titles = [a.text for a in page.html.select("table.list td:first-child a")]
    assert titles == [f"Snow {d:02}" for d in range(4, 0, -1)]
    assert "next" not in page.text and "previous" in page.text
    # a hit links to its own album
    assert page.click("Snow 01").request.path == "/albums/alps/pics/1"
    assert "Nothing found." in demo.get("/search", {"q": "nothing"}).text


def test_search_before_any_album(demo):
    assert "No album yet." in demo.get("/search", {"q": "snow"}).text
    assert "Search every album" in demo.get("/search", {"page": "x"}).text


def test_archiving_moves_pictures_and_twice_is_no_duplicate(demo, tmp_path):
    add_album(demo)
    add_pic(demo, "Sunrise", "2025-01-02", "snow, mountain")
    add_pic(demo, "Lake", "2026-01-03", "water")
    album = album_file(tmp_path, "alps")
    archive = str(tmp_path / "albums" / "alps" / "archive.sqlite")
    page = demo.get("/albums/alps")
    form = page.forms[0]
    form.get("pic", index=1).checked = True  # newest first: Sunrise is second
    page = form.submit().follow()
    assert "1 picture(s) moved to the archive." in page.text
    assert "the copy was committed on <code>archive:alps</code> first" in page.text
    # moved, not copied: the picture and its tag links left the album, whose
    # tags stay (shared); the archive has the picture under its id, its
    # links, and a copy of its tags
    assert rows(album, "select title from pic") == [("Lake",)]
    assert rows(album, "select count(*) from pic_tag") == [(1,)]
    assert rows(album, "select count(*) from tag") == [(3,)]
    assert rows(archive, "select id, title from pic") == [(1, "Sunrise")]
    tags = "select t.name from pic_tag pt join tag t on t.id = pt.tag_id order by 1"
    assert rows(archive, tags) == [("mountain",), ("snow",)]
    # the same form submitted again (a double click, or the back button)
    page = demo.post("/albums/alps/archive", {"pic": "1"}).follow()
    assert "Nothing to move" in page.text
    assert rows(archive, "select count(*) from pic") == [(1,)]
    assert rows(archive, "select count(*) from pic_tag") == [(2,)]
    assert ("archive:alps", "using_bind") in routing(page)
    # an archived picture is found by its id, transparently: the album, then
    # its archive, by dbrouter_archive's router
    page = demo.get("/albums/alps/pics/1")
    assert "<h1>Sunrise</h1>" in page.text and "found in the archive" in page.text
    assert "mountain" in page.text
    assert routing(page)[:2] == [
        ("tenant:alps", "router ArchiveRouter"),
        ("archive:alps", "router ArchiveRouter"),
    ]
    assert ("archive:alps", "loaded from archive:alps") in routing(page)  # tags
    # new pictures never take an archived picture's id
    add_pic(demo, "Later", "2026-02-01", "snow")
    assert rows(album, "select id from pic order by id") == [(2,), (3,)]
    # archiving a second picture with a tag already in the archive
    page = demo.post("/albums/alps/archive", {"pic": ["3"]}).follow()
    assert "1 picture(s) moved to the archive." in page.text
    assert rows(archive, "select name from tag order by name") == [
        ("mountain",),
        ("snow",),
    ]
    assert "Later" in demo.get("/albums/alps/pics/3").text


def test_archiving_nothing_or_garbage(demo):
    add_album(demo)
    page = demo.post("/albums/alps/archive", {"pic": ["x", "99"]}).follow()
    assert "Nothing to move" in page.text
    assert "No archived picture." in page.text


def test_the_debug_toolbar_panel_renders_the_routing(tmp_path):
    app = make_demo(
        tmp_path,
        **{
            "pyramid.includes": "pyramid_debugtoolbar",
            "debugtoolbar.includes": "pyramid_dbrouter.debugtoolbar",
        },
    )
    demo = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    try:
        add_album(demo)
        page = demo.post("/albums/alps/pics", {"title": "Dawn", "taken": "2026-01-01"})
        page = demo.get(toolbar_url(page.follow().text))
        assert "DB routing" in page.text
        text = page.html.get_text(" ")
        assert "router TenantRouter" in text and "tenant:alps" in text
        assert "__bind_key__ of Album" in text
        assert "album.sqlite" in text  # the engine's URL
        assert "nothing written" in text  # a GET
    finally:
        close_demo(app)


@pytest.mark.servers
def test_on_postgresql_archiving_is_a_two_phase_commit_shown_on_the_page(
    tmp_path, pg_db
):
    """postgres.ini's layout: albums and their archives as databases, the
    catalog on PostgreSQL; moving a picture writes two databases in one
    transaction."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(pg_db).set(database="postgres")
    app = make_demo(
        tmp_path,
        **{
            "sqlalchemy.url": pg_db,
            "dbrouter.tenant.mode": "database",
            "dbrouter.tenant.url": server.render_as_string(hide_password=False),
            "dbrouter.tenant.name_prefix": "demo_album_",
            "dbrouter.tenant.root": None,
            "dbrouter.xid_prefix": "demo",
        },
    )
    demo = webtest.TestApp(app)
    key = f"t{os.getpid()}"
    try:
        add_album(demo, key)
        add_pic(demo, "Dawn", "2026-01-01", "sky", key=key)
        page = demo.post(f"/albums/{key}/archive", {"pic": "1"}).follow()
        text_ = page.html.get_text(" ")
        assert "Copy and delete were one transaction" in text_
        assert "two-phase commit: prepared demo:" in text_
        assert f":tenant:{key}" in text_ and f":archive:{key}" in text_
        assert "decision on default" in text_
        assert "found in the archive" in demo.get(f"/albums/{key}/pics/1").text
        demo.post(f"/albums/{key}/archive", {"pic": "1"}).follow()  # again
        archive = create_engine(server.set(database=f"demo_archive_{key}"))
        with archive.connect() as conn:
            count = conn.execute(text("select count(*) from pic"))
            assert count.scalar() == 1
        archive.dispose()
    finally:
        from dbrouter_tenant import remove_tenant
        from pyramid_dbrouter import dispose_engine

        close_demo(app)
        dispose_engine(app.registry, f"archive:{key}")
        get_state(app.registry).engines.factories["archive"].remove(key)
        remove_tenant(app.registry, key)
