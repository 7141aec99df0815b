"""A tiny Pyramid application for the ``dbrouter`` command's tests.

Engines come from the ini file the tests write into ``tmp_path``; the models
are in :mod:`cli_app.models`, the routers in :mod:`cli_app.routers`.
"""

from pyramid.config import Configurator
from pyramid.settings import asbool


def main(global_config, **settings):
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    if asbool(settings.get("cli_app.tenants")):
        config.add_db_engine_factory("tenant", tenant_url)
    return config.make_wsgi_app()


def tenant_url(key, settings):
    """One SQLite file per tenant (never made by ``dbrouter show``)."""
    return f"sqlite:///{settings['cli_app.tenant_root']}/{key}.db"


def without_dbrouter(global_config, **settings):
    """An application that forgot ``config.include("pyramid_dbrouter")``."""
    return Configurator(settings=settings).make_wsgi_app()
