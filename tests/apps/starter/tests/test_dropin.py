"""Not the template's: checks that the template's tests above really ran on
pyramid_dbrouter, so that reverting ``starterapp/models/__init__.py`` to the
generated one cannot leave the drop-in proof passing by itself."""

from pyramid.scripting import prepare
from sqlalchemy.engine import make_url
from starterapp import models

from pyramid_dbrouter import RoutingSession, get_engines


def test_the_app_runs_on_pyramid_dbrouter(app, dbengine, dbsession):
    assert isinstance(dbsession, RoutingSession)
    # the template's ``dbengine`` seam: the fixture's Engine is ``default``
    assert get_engines(app.registry) == {"default": dbengine}


def test_request_dbsession_honours_the_app_dbsession_seam(app, dbsession):
    with prepare(registry=app.registry) as env:
        request = env["request"]
        request.environ["app.dbsession"] = dbsession
        assert request.dbsession is dbsession


def test_get_engine_is_the_default_engine_of_many(app_settings):
    settings = dict(app_settings, **{"sqlalchemy.archive.url": "sqlite://"})
    engine = models.get_engine(settings)
    assert engine.url == make_url(app_settings["sqlalchemy.url"])
    engine.dispose()
