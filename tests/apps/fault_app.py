"""The two-phase test application, for the fault-injection suite.

tests/apps/twophase_app.py, plus:

* ``POST /write-and-touch``: as ``/write``, and on each engine named in
  ``touch`` an UPDATE that matches no row -- the engine has written (by the
  SQL verb, so its branch is prepared) but changed nothing;
* ``main``, a PasteDeploy app factory: ``dbrouter recover`` loads an
  application from an ini file, as ``pserve`` does, and the
  recovery suites write ini files with ``use = call:fault_app:main`` and
  the engine URLs of the process it killed.
"""

from pyramid.config import Configurator
from pyramid.view import view_config
from sqlalchemy import text

import twophase_app


@view_config(route_name="write-and-touch", request_method="POST", renderer="json")
def write_and_touch(request):
    for name in request.params.get("touch", "").split(","):
        if name:
            request.dbsession.using_bind(name).execute(
                text("UPDATE entries SET note = note WHERE id < 0")
            )
    return twophase_app.write(request)


def make_app(engines, **settings):
    """``twophase_app.make_app``, with the route above added to it."""
    app = twophase_app.make_app(engines, **settings)
    config = Configurator(registry=app.registry)
    config.add_route("write-and-touch", "/write-and-touch")
    config.scan("fault_app")
    config.commit()
    return app


def main(global_config, **settings):
    """``sqlalchemy.url`` and ``sqlalchemy.NAME.url`` come from the ini file."""
    return make_app({}, **settings)
