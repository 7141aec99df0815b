"""The demo: photo albums, each a folder with its own SQLite database.

``make run`` serves it (``development.ini``); ``postgres.ini`` runs the
same application on PostgreSQL databases.  Engines:

* ``tenant:KEY`` -- album KEY's own database (dbrouter_tenant: a folder
  with an SQLite file, or a PostgreSQL database), holding ``pic``, ``tag``
  and ``pic_tag``;
* ``archive:KEY`` -- album KEY's archive, the same tables (``archive.sqlite``
  in the album's folder, or a database): dbrouter_archive moves old
  pictures there, and finds them there by id;
* ``default`` -- the catalog of albums, what spans albums.

Every page ends with what ``pyramid_dbrouter.trace`` recorded: which
engine answered each query and by which rule, and how the last write was
committed.
"""

import os

from pyramid.config import Configurator
from sqlalchemy.engine import make_url

from .archive import PREFIX, AlbumArchives
from .routers import EveryAlbumRouter

DEFAULTS = {
    "dbrouter.metadata": "dbrouter_demo.models:Base",
    "dbrouter.tenant.metadata": "dbrouter_demo.models:AlbumBase",
    # each album's archive: the album's engine is hot, archive:KEY its archive
    "dbrouter.archive.hot": "tenant:*",
    "dbrouter.archive.archive": "archive:*",
    "dbrouter.archive.models": "dbrouter_demo.models:Pic",
    "dbrouter.archive.references": "dbrouter_demo.models:Tag",
}


def main(global_config, **settings):
    """The WSGI application of development.ini and postgres.ini."""
    for key, value in DEFAULTS.items():
        settings.setdefault(key, value)
    _make_folders(settings)
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.add_db_engine_factory(PREFIX, AlbumArchives(config.registry))
        # the routers in order: the search page reads every album; then the
        # archive's, which asks the tenant plugin's for a picture's album
        config.add_db_router(EveryAlbumRouter())
        config.include("dbrouter_archive")
        config.include("dbrouter_tenant")
        config.include("pyramid_dbrouter.trace")
        config.include(".routes")
        config.scan(".views")
    return config.make_wsgi_app()


def _make_folders(settings):
    """The folders of the SQLite files and album folders (``var/demo``), so
    that ``pserve development.ini`` works on a fresh clone."""
    folders = [settings.get("dbrouter.tenant.root")]
    for key, value in settings.items():
        if key.startswith("sqlalchemy.") and key.endswith("url"):
            url = make_url(value)
            if url.get_backend_name() == "sqlite" and url.database:
                folders.append(os.path.dirname(url.database))
    for folder in filter(None, folders):
        os.makedirs(folder, exist_ok=True)
