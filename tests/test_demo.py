"""The demo application of development.ini, on SQLite files in tmp_path."""

import pytest
import webtest

from dbrouter_demo import main
from pyramid_dbrouter import init_db
from sample import rows


@pytest.fixture
def demo(tmp_path):
    app = main(
        {},
        **{
            "sqlalchemy.url": f"sqlite:///{tmp_path}/demo.sqlite",
            "sqlalchemy.archive.url": f"sqlite:///{tmp_path}/archive.sqlite",
            "dbrouter.metadata": "dbrouter_demo.models:Base",
        },
    )
    init_db(app.registry)
    yield webtest.TestApp(app)
    for _name, engine in app.registry["dbrouter"].engines.static_items():
        engine.dispose()


def test_the_page_lists_hot_and_archived_albums(demo, tmp_path):
    page = demo.get("/")
    assert "Photo albums" in page.text and page.text.count("<li>none</li>") == 2
    demo.post("/", {"title": "Alps <2026>"}).follow()
    assert rows(f"{tmp_path}/demo.sqlite", "select title from albums") == [
        ("Alps <2026>",)
    ]
    demo.post("/albums/1/archive").follow()
    assert rows(f"{tmp_path}/archive.sqlite", "select title from albums") == [
        ("Alps <2026>",)
    ]
    assert rows(f"{tmp_path}/archive.sqlite", "select caption from photos") == [
        ("cover",)
    ]
    page = demo.get("/")
    assert page.text.count("Alps &lt;2026&gt;") == 2


def test_archiving_an_unknown_album_is_a_404(demo):
    demo.post("/albums/99/archive", status=404)
