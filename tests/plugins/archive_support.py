"""Fixtures of the archive tests (``pytest_plugins = ("archive_support",)``)."""

import pytest
from archive_app import make_app

from pyramid_dbrouter import get_engines


@pytest.fixture
def sqlite_pair(tmp_path):
    """``{"default": hot URL, "archive": URL}``: two SQLite files."""
    return {
        "default": f"sqlite:///{tmp_path}/hot.sqlite",
        "archive": f"sqlite:///{tmp_path}/archive.sqlite",
    }


@pytest.fixture
def archive_app():
    """``archive_app(engines, **settings)``: the shop over *engines*, tables
    made; its engines are disposed of after the test."""
    apps = []

    def make(engines, **settings):
        app = make_app(dict(engines), **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        for engine in get_engines(app.registry).values():
            engine.dispose()
