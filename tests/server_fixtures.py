"""pytest plugin: real PostgreSQL clusters and the MariaDB service as fixtures.

Load it from tests/conftest.py with ``pytest_plugins = ("server_fixtures",)``
(tests/ is on sys.path there), or on the command line with
``PYTHONPATH=tests pytest -p server_fixtures``.

Session fixtures (started on first use, stopped and deleted at session end):

* ``pg_primary`` - a PostgresCluster with two-phase commit, streaming to...
* ``pg_replica`` - ...a hot standby of pg_primary (read-only).
* ``pg_second`` - an independent second cluster with two-phase commit.
* ``mariadb`` - the MariaDB helper for the service on 127.0.0.1:3306.

Function fixtures, each a fresh uniquely named database, dropped afterwards
(with any prepared transactions left in it), so tests never see each other's
tables: ``pg_db`` (on pg_primary), ``pg_db2`` (on pg_second), ``maria_db``
(on mariadb).  Each yields an SQLAlchemy URL string; the database name is
``sqlalchemy.make_url(url).database``.

``start_cluster(name, settings=...)`` starts a cluster of a test's own, with
the same skip-or-fail behaviour.

A server that cannot be started or reached skips the tests that need it, or
fails them when DBROUTER_REQUIRE_SERVERS=1 (CI), so that a broken machine
cannot pass as green.  Tests using any of these fixtures get the ``servers``
marker, so ``-m "not servers"`` deselects them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile

import pytest

import _servers

#: MariaDB's error for an XA branch it does not know (any more)
XAER_NOTA = 1397

SERVER_FIXTURES = frozenset(
    {
        "pg_primary",
        "pg_second",
        "pg_replica",
        "mariadb",
        "pg_db",
        "pg_db2",
        "maria_db",
    }
)


def unavailable(reason: str):
    """Skip, or fail when servers are required; never returns."""
    if _servers.servers_required():
        pytest.fail(
            f"{reason}\n(DBROUTER_REQUIRE_SERVERS=1 turns this skip into a failure)",
            pytrace=False,
        )
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    # A test that forgot @pytest.mark.servers still needs a server; marking it
    # here keeps -m "not servers" from starting clusters behind one's back.
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def start_cluster(name: str, **kwargs) -> _servers.PostgresCluster:
    """Start a PostgresCluster of a test's own, or skip/fail like the fixtures.

    For a test that needs a server unlike the shared ones (other settings, or
    one it may break); keyword arguments go to PostgresCluster.  Use it as a
    context manager, or call cleanup(), to stop and delete it.
    """
    cluster = None
    try:
        cluster = _servers.PostgresCluster(name, **kwargs)
        return cluster.start()
    except Exception as exc:  # any failure to start means "no server here"
        if cluster is not None:
            cluster.cleanup()
        unavailable(f"PostgreSQL cluster {name!r} could not start: {exc}")


@pytest.fixture(scope="session")
def pg_primary():
    """A PostgresCluster with prepared transactions; pg_replica streams from it."""
    cluster = start_cluster("primary")
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def pg_second():
    """A second, independent PostgresCluster with prepared transactions."""
    cluster = start_cluster("second")
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def pg_replica(pg_primary):
    """A hot standby of pg_primary (a PostgresCluster with .role == "replica").

    Databases created on the primary exist here after
    ``_servers.wait_replicated(pg_primary, pg_replica)``.
    """
    try:
        replica = _servers.start_replica(pg_primary)
    except Exception as exc:
        unavailable(f"PostgreSQL replica could not start: {exc}")
    yield replica
    replica.cleanup()


@pytest.fixture(scope="session")
def mariadb():
    """The _servers.MariaDB helper, once the service has answered."""
    server = _servers.MariaDB()
    try:
        server.check()
    except Exception as exc:
        unavailable(str(exc))
    return server


def _pg_database(cluster: _servers.PostgresCluster):
    # A test that crashed or stopped the session's cluster must not take the
    # following tests down with it.
    if not cluster.is_running():
        cluster.start()
    name = cluster.create_database()
    yield cluster.url(name)
    if not cluster.is_running():
        cluster.start()
    cluster.drop_database(name)


@pytest.fixture
def pg_db(pg_primary):
    """URL of a fresh database on pg_primary (and so, replicated, on pg_replica)."""
    yield from _pg_database(pg_primary)


@pytest.fixture
def pg_db2(pg_second):
    """URL of a fresh database on pg_second."""
    yield from _pg_database(pg_second)


@pytest.fixture
def maria_db(mariadb):
    """URL of a fresh database on the MariaDB service."""
    # XA branches are server-wide, not per database: the ones that appeared
    # during the test are taken to be the test's, and rolled back, since a
    # prepared branch holds its locks (and blocks the drop) until resolved.
    # That holds only if no other test run on this machine prepares branches
    # meanwhile, so such tests take a machine-wide lock (serialised across
    # concurrent runs; a single run never waits).
    with _machine_lock("pyramid_dbrouter-mariadb-xa"):
        yield from _maria_database(mariadb)


def _maria_database(mariadb):
    before = set(mariadb.xa_recover())
    name = mariadb.create_database()
    yield mariadb.url(name)
    # Connections of the test go first: a branch still attached to a live
    # connection cannot be rolled back from another one (XAER_NOTA).
    mariadb.kill_connections(name)
    for branch in set(mariadb.xa_recover()) - before:
        try:
            mariadb.xa_rollback(branch)
        except Exception as exc:
            # XAER_NOTA: finished meanwhile, by whoever prepared it (other
            # test runs may share the service and list their branches too)
            if exc.args[:1] != (XAER_NOTA,):
                raise
    mariadb.drop_database(name)


@contextlib.contextmanager
def _machine_lock(name):
    """An exclusive lock shared by every process of this machine."""
    path = os.path.join(tempfile.gettempdir(), f"{name}.lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
