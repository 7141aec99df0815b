"""The demo: photo albums, on embedded SQLite databases.

``pserve development.ini`` serves it.  Albums live in the ``default``
database; albums marked archived are read from and moved to ``archive``
with ``using_bind``.  It is a small page for now: the full demo (one SQLite
file per folder) grows with the plugins.
"""

from pyramid.config import Configurator


def main(global_config, **settings):
    """The WSGI application of development.ini."""
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.include(".routes")
        config.scan(".views")
    return config.make_wsgi_app()
