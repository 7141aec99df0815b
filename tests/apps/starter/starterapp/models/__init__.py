from sqlalchemy.orm import configure_mappers

# the template's get_engine, get_session_factory and get_tm_session, with the
# same signatures, now come from pyramid_dbrouter
from pyramid_dbrouter import get_engine, get_session_factory, get_tm_session  # noqa: F401

# import or define all models here to ensure they are attached to the
# Base.metadata prior to any initialization routines
from .mymodel import MyModel  # noqa: F401

# run configure_mappers after defining all of the models to ensure
# all relationships can be setup
configure_mappers()


def includeme(config):
    """
    Initialize the model for a Pyramid app.

    Activate this setup using ``config.include('starterapp.models')``.

    """
    # pyramid_tm (explicit manager), pyramid_retry, the engines of the
    # ``sqlalchemy.*`` settings (or the ``dbengine`` test seam),
    # registry['dbsession_factory'] and request.dbsession (which honours
    # the ``app.dbsession`` test seam)
    config.include("pyramid_dbrouter")
