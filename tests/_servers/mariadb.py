"""The MariaDB (or MySQL) service of the machine."""

from __future__ import annotations

import contextlib
import re
import time
from urllib.parse import quote

from .common import ServerUnavailable, _check_name, import_driver, unique_name


def _import_pymysql():
    return import_driver("pymysql", "PyMySQL")


class MariaDB:
    """The MariaDB (or MySQL) service of the machine, not started by us.

    ``check()`` raises ServerUnavailable unless it answers.  Databases are
    created per test with unique names, because the service and its ``test``
    database are shared with everything else on the machine.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 3306,
        user: str = "root",
        password: str = "",
    ):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.version_string = ""

    def __repr__(self) -> str:
        return f"<MariaDB {self.user}@{self.host}:{self.port} {self.version_string}>"

    def connect(self, database: str | None = None, **kwargs):
        """A PyMySQL connection, autocommit unless told otherwise."""
        pymysql = _import_pymysql()
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("charset", "utf8mb4")
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            **kwargs,
        )

    def check(self) -> str:
        """Make sure the service answers; returns its version string."""
        pymysql = _import_pymysql()
        try:
            conn = self.connect()
        except pymysql.MySQLError as exc:
            raise ServerUnavailable(
                f"MariaDB does not answer on {self.host}:{self.port} as "
                f"{self.user!r}: {exc} (start it with: start-stop-daemon --start "
                "--oknodo --background --exec /usr/sbin/mariadbd)"
            ) from exc
        with conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            self.version_string = cur.fetchone()[0]
        return self.version_string

    def execute(self, sql: str, args=None, database: str | None = None):
        """Run one statement in autocommit on a fresh connection; rows if any."""
        with self.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall()) if cur.description else []

    @property
    def is_mariadb(self) -> bool:
        if not self.version_string:
            self.check()
        return "mariadb" in self.version_string.lower()

    @property
    def version(self) -> tuple[int, ...]:
        """(major, minor, patch) of the server, e.g. (10, 11, 6)."""
        if not self.version_string:
            self.check()
        match = re.match(r"(\d+)\.(\d+)\.(\d+)", self.version_string)
        return tuple(int(part) for part in match.groups()) if match else (0, 0, 0)

    def supports_durable_xa(self) -> bool:
        """Whether a prepared XA branch survives disconnects and restarts.

        MariaDB made XA PREPARE durable in 10.5 (MDEV-742); before, a branch
        was rolled back when its connection closed.  MySQL has it since 5.7.7.
        """
        if self.is_mariadb:
            return self.version >= (10, 5)
        return self.version >= (5, 7, 7)

    def url(self, dbname: str = "test", driver: str = "mysql+pymysql") -> str:
        """An SQLAlchemy URL for a database on the service."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"{driver}://{auth}@{self.host}:{self.port}/{dbname}?charset=utf8mb4"

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name when none is given) and return its name."""
        name = _check_name(name or unique_name())
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def xa_recover(self) -> list[tuple[int, bytes, bytes]]:
        """Prepared XA branches of the whole server as (formatID, gtrid, bqual).

        XA RECOVER returns gtrid and bqual glued together in ``data``, which
        PyMySQL hands over as bytes.
        """
        branches = []
        for format_id, gtrid_len, bqual_len, data in self.execute("XA RECOVER"):
            if isinstance(data, str):
                data = data.encode()
            branches.append(
                (format_id, data[:gtrid_len], data[gtrid_len : gtrid_len + bqual_len])
            )
        return branches

    @staticmethod
    def xid_sql(branch: tuple[int, bytes, bytes]) -> str:
        """An xid for XA COMMIT/ROLLBACK, as hex so that any bytes are safe."""
        format_id, gtrid, bqual = branch
        return f"X'{gtrid.hex()}', X'{bqual.hex()}', {int(format_id)}"

    def xa_rollback(self, branch: tuple[int, bytes, bytes]) -> None:
        self.execute(f"XA ROLLBACK {self.xid_sql(branch)}")

    def xa_commit(self, branch: tuple[int, bytes, bytes]) -> None:
        self.execute(f"XA COMMIT {self.xid_sql(branch)}")

    def kill_connections(self, name: str, timeout: float = 10) -> None:
        """Kill the connections using database ``name`` and wait until they end.

        KILL only flags a connection; until its thread has gone, its locks are
        held and its XA branch is still attached to it.
        """
        pymysql = _import_pymysql()
        query = (
            "SELECT id FROM information_schema.processlist"
            " WHERE db = %s AND id <> CONNECTION_ID()"
        )
        deadline = time.monotonic() + timeout
        with self.connect() as conn, conn.cursor() as cur:
            while True:
                cur.execute(query, (name,))
                ids = [conn_id for (conn_id,) in cur.fetchall()]
                if not ids or time.monotonic() > deadline:
                    return
                for conn_id in ids:
                    with contextlib.suppress(pymysql.MySQLError):  # already gone
                        cur.execute(f"KILL {int(conn_id)}")
                time.sleep(0.02)

    def drop_database(self, name: str, *, lock_wait_timeout: int = 10) -> None:
        """Drop a database even if a test left connections open in it.

        Connections still using it are killed first: an open transaction holds
        metadata locks that would make DROP DATABASE wait.  Prepared XA
        branches are not tied to a database; see ``server_fixtures.maria_db``.
        """
        _check_name(name)
        self.kill_connections(name)
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"SET SESSION lock_wait_timeout = {int(lock_wait_timeout)}")
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
