"""A pytest plugin for applications that use pyramid_dbrouter.

Opt in from the project's top-level ``conftest.py``::

    pytest_plugins = ("pyramid_dbrouter.testing",)

or with ``pytest -p pyramid_dbrouter.testing`` (it is not registered through
an entry point: it would load in every project's test run).

The fixtures are the cookiecutter-starter's (``tests/conftest.py`` of its
sqlalchemy backend), over every engine:

``ini_file``
    the application's INI file: ``--dbrouter-ini PATH``, else the ``dbrouter_ini``
    setting of the pytest configuration (relative to its directory), else
    ``testing.ini`` in the root directory.  Override the fixture to choose
    otherwise.
``app_settings``, ``app``
    the settings of ``[app:main]`` and the WSGI application made from the
    INI file (``pyramid.paster.get_app``), once per session.
``dbrouter_schema``
    session-wide: creates on each static engine the tables ``allow_migrate``
    allows there (``init_db``, when ``dbrouter.metadata`` is set).
    Override it to run Alembic instead, or to make tenants.
``tm``
    a doomed, explicit ``TransactionManager``, aborted after each test: the
    test's one session rolls back **every** engine it touched -- ``default``,
    the others, tenants and shards alike.
``dbsession``
    the application's ``RoutingSession``, joined to ``tm``.
``testapp``
    a WebTest ``TestApp`` whose requests use ``tm`` and ``dbsession``
    (pyramid_tm's ``tm.active``/``tm.manager`` and the ``app.dbsession``
    seam): what a request writes is seen by the test, and rolled back after.
``app_request``, ``dummy_request``, ``dummy_config``
    a real request (``pyramid.scripting.prepare``) and a ``DummyRequest``,
    both with ``dbsession`` and ``tm``; a ``testConfig`` around the latter.

The marker ``@pytest.mark.dbrouter_engines("default", "tenant:*")`` names the
engines a test's session may touch (``fnmatch`` patterns): beginning a
transaction on any other fails the test with :class:`EngineNotAllowed`.
``@pytest.mark.dbrouter_engines()`` allows none.  Unmarked tests may touch
every engine.

What commits outside ``tm`` is not rolled back: ``session_scope`` and
``tenant_scope`` blocks, and connections taken from ``get_engines()``.
"""

import fnmatch
import os

import pytest
from sqlalchemy import event

from .config import get_state
from .exceptions import DBRouterError
from .factory import get_tm_session
from .migrate import init_db

MARKER = "dbrouter_engines"


class EngineNotAllowed(DBRouterError):
    """A test touched an engine its ``dbrouter_engines`` marker does not name."""


def pytest_addoption(parser):
    group = parser.getgroup("dbrouter", "pyramid_dbrouter")
    group.addoption(
        "--dbrouter-ini",
        action="store",
        metavar="INI_FILE",
        help="the INI file of the application under test",
    )
    parser.addini(
        "dbrouter_ini",
        "the INI file of the application under test, relative to this file",
        default="testing.ini",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): the engines (fnmatch patterns: 'tenant:*') this "
        "test's dbsession may touch; none if empty, every engine if unmarked",
    )


@pytest.fixture(scope="session")
def ini_file(request):
    """The application's INI file."""
    config = request.config
    given = config.getoption("dbrouter_ini")
    if given:
        return os.path.abspath(given)
    base = config.inipath.parent if config.inipath else config.rootpath
    return os.path.abspath(os.path.join(base, config.getini("dbrouter_ini")))


@pytest.fixture(scope="session")
def app_settings(ini_file):
    from pyramid.paster import get_appsettings

    return get_appsettings(ini_file)


@pytest.fixture(scope="session")
def app(ini_file):
    from pyramid.paster import get_app, setup_logging

    setup_logging(ini_file)
    wsgi_app = get_app(ini_file)
    if getattr(wsgi_app, "registry", None) is None:
        raise pytest.UsageError(
            f"{ini_file}: [app:main] is not a Pyramid application (a pipeline "
            "or a filter?); override the 'app' fixture to return the Router"
        )
    yield wsgi_app
    get_state(wsgi_app.registry).engines.dispose()


@pytest.fixture(scope="session")
def dbrouter_schema(app):
    """The tables of ``dbrouter.metadata``, on each static engine that
    ``allow_migrate`` allows, made once per session (existing ones kept);
    ``{engine: [tables]}``.  Every fixture with a session depends on it."""
    registry = app.registry
    if get_state(registry).metadata is None:
        return None
    return init_db(registry)


@pytest.fixture
def tm():
    """A transaction manager doomed from the start, aborted after the test."""
    import transaction

    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    manager.doom()
    yield manager
    manager.abort()


def _allowed(request):
    marker = request.node.get_closest_marker(MARKER)
    return None if marker is None else tuple(marker.args)


@pytest.fixture
def dbsession(request, app, dbrouter_schema, tm):
    """The test's session over every engine, joined to ``tm``."""
    session = get_tm_session(app.registry["dbsession_factory"], tm)
    allowed = _allowed(request)
    if allowed is not None:
        names = get_state(app.registry).engines

        def guard(session, transaction, connection):
            name = names.name_of(connection.engine)
            if not any(fnmatch.fnmatchcase(str(name), p) for p in allowed):
                raise EngineNotAllowed(
                    f"{request.node.nodeid} touched engine {name!r}; its "
                    f"@pytest.mark.{MARKER} allows only "
                    f"{', '.join(map(repr, allowed)) or 'none'}"
                )

        event.listen(session, "after_begin", guard)
    return session


@pytest.fixture
def testapp(app, tm, dbsession):
    """WebTest over the application; each request uses ``tm`` and
    ``dbsession``, so that the test sees its writes and they are rolled back.

    During each request the session knows it (routers get it as their
    ``request`` hint: a tenant's route names the tenant), and what the
    request left pending is flushed when it responds, as its commit would
    have: a request's objects are routed by that request, not by the next.
    """
    import webtest
    from pyramid.interfaces import INewRequest

    def joined(event):
        request = event.request
        if request.environ.get("app.dbsession") is not dbsession:
            return
        previous = dbsession.info.get("request")
        dbsession.info["request"] = request
        request.add_response_callback(lambda request, response: dbsession.flush())
        request.add_finished_callback(
            lambda request: dbsession.info.__setitem__("request", previous)
        )

    app.registry.registerHandler(joined, (INewRequest,))
    yield webtest.TestApp(
        app,
        extra_environ={
            "HTTP_HOST": "example.com",
            "tm.active": True,
            "tm.manager": tm,
            "app.dbsession": dbsession,
        },
    )
    app.registry.unregisterHandler(joined, (INewRequest,))


@pytest.fixture
def app_request(app, tm, dbsession):
    """A real request of the application, with ``dbsession`` and ``tm``."""
    from pyramid.scripting import prepare

    with prepare(registry=app.registry) as env:
        request = env["request"]
        request.host = "example.com"
        request.dbsession = dbsession
        request.tm = tm
        previous = dbsession.info.get("request")
        dbsession.info["request"] = request  # the routers' ``request`` hint
        yield request
        dbsession.info["request"] = previous


@pytest.fixture
def dummy_request(app, tm, dbsession):
    """A ``DummyRequest`` with ``dbsession``, ``tm`` and the application's
    registry."""
    from pyramid.testing import DummyRequest

    request = DummyRequest()
    request.host = "example.com"
    request.registry = app.registry
    request.dbsession = dbsession
    request.tm = tm
    return request


@pytest.fixture
def dummy_config(dummy_request):
    """A Configurator with ``dummy_request`` and the threadlocals pushed."""
    from pyramid.testing import testConfig

    with testConfig(request=dummy_request) as config:
        yield config
