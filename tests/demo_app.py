"""The demo application on SQLite files in a temporary folder, for the
WebTest and browser suites."""

import re

from dbrouter_demo import main
from pyramid_dbrouter import init_db


def demo_settings(folder, **extra):
    settings = {
        "sqlalchemy.url": f"sqlite:///{folder}/catalog.sqlite",
        "dbrouter.tenant.mode": "sqlite-folder",
        "dbrouter.tenant.root": f"{folder}/albums",
    }
    settings.update(extra)
    return {k: v for k, v in settings.items() if v is not None}


def make_demo(folder, **extra):
    """The WSGI application, its catalog's table made."""
    app = main({}, **demo_settings(folder, **extra))
    init_db(app.registry)
    return app


def close_demo(app):
    app.registry["dbrouter"].engines.dispose()


def toolbar_url(html):
    """The URL of the debug toolbar's page of the request that made *html*."""
    return re.search(r"/_debug_toolbar/[0-9a-f]+", html).group(0)
