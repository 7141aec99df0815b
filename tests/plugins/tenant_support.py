"""Fixtures of the tenant suites (imported by each test module: a conftest
here would clash with the other plugins' suites)."""

import os

import pytest
import webtest
from tenant_app import make_app


@pytest.fixture
def album_root(tmp_path):
    """The folder that holds the album folders (inside tmp_path, so that a
    test can check nothing was created next to it)."""
    root = tmp_path / "albums"
    root.mkdir()
    return root


@pytest.fixture
def folder_settings(tmp_path, album_root):
    return {
        "sqlalchemy.url": f"sqlite:///{tmp_path / 'shared.sqlite'}",
        "dbrouter.tenant.mode": "sqlite-folder",
        "dbrouter.tenant.root": str(album_root),
    }


@pytest.fixture
def folder_app(folder_settings):
    """``(testapp, registry)`` of the album application in sqlite-folder mode."""
    app = make_app(folder_settings)
    yield webtest.TestApp(app), app.registry
    app.registry["dbrouter"].engines.dispose()


@pytest.fixture
def files_under():
    """``files_under(path)``: every file and folder under *path*, relative."""
    return _files_under


def _files_under(path):
    found = set()
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), path))
    return found
