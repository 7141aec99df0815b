"""Real database servers for the test suites that cannot be faked.

Two-phase commit, replication and crash recovery only mean something against
real servers, so this package starts throw-away PostgreSQL clusters and talks
to the MariaDB service of the machine:

* ``PostgresCluster`` - a private cluster in a temporary directory, on a free
  loopback port, with prepared transactions enabled and every statement logged.
* ``start_replica(primary)`` / ``wait_replicated(primary, replica)`` - a
  streaming hot standby of such a cluster.
* ``MariaDB`` - the already running service on 127.0.0.1:3306.
* ``servers_required()`` - whether a missing server is a failure (CI) or a skip.

It is plain Python, without pytest, so that a script or a REPL can use it too;
``server_fixtures.py`` turns it into fixtures.  The drivers (psycopg, PyMySQL)
are imported only when used, so that the package imports without them.

Its modules, one concern each; everything is re-exported here, so that
``import _servers`` and ``from _servers import X`` are all a user needs:

* ``common`` - ``ServerUnavailable``, ``servers_required``, unique database
  names, free ports;
* ``processes`` - the server processes: alive or dead, children, zombies;
* ``pg_setup`` - what a cluster is made of: binaries, settings, pg_hba.conf,
  the initdb template;
* ``postgres`` - ``PostgresCluster``;
* ``replica`` - ``start_replica``, ``wait_replicated``;
* ``mariadb`` - ``MariaDB``;
* ``cleanup`` - no cluster outlives its run (atexit, signals, abandoned runs).

The ``_name as _name`` imports re-export helpers private to the package that
were module-level names when tests/_servers.py was one module, and are still
reached as ``_servers._name`` (test_servers: ``_alive``; benchmarks/_bench.py:
``_children``).
"""

from .cleanup import TMP_PREFIX, cleanup_all
from .cleanup import _clusters as _clusters
from .cleanup import _die_cleanly_on_signals as _die_cleanly_on_signals
from .cleanup import _register as _register
from .cleanup import _remove_abandoned_clusters as _remove_abandoned_clusters
from .cleanup import _unregister as _unregister
from .common import (
    REQUIRE_ENV,
    ServerUnavailable,
    free_port,
    import_driver,
    servers_required,
    unique_name,
)
from .common import _check_name as _check_name
from .mariadb import MariaDB
from .mariadb import _import_pymysql as _import_pymysql
from .pg_setup import DEFAULT_SETTINGS, PG_BIN_ENV, PG_HBA, find_pg_bindir
from .pg_setup import _conf_value as _conf_value
from .pg_setup import _template_for as _template_for
from .postgres import PostgresCluster
from .postgres import _import_psycopg as _import_psycopg
from .processes import _alive as _alive
from .processes import _become_subreaper as _become_subreaper
from .processes import _children as _children
from .processes import _proc_stat as _proc_stat
from .processes import _reap_postgres_zombies as _reap_postgres_zombies
from .processes import _wait_dead as _wait_dead
from .replica import start_replica, wait_replicated

__all__ = [
    "DEFAULT_SETTINGS",
    "MariaDB",
    "PG_BIN_ENV",
    "PG_HBA",
    "PostgresCluster",
    "REQUIRE_ENV",
    "ServerUnavailable",
    "TMP_PREFIX",
    "cleanup_all",
    "find_pg_bindir",
    "free_port",
    "import_driver",
    "servers_required",
    "start_replica",
    "unique_name",
    "wait_replicated",
]
