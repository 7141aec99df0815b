"""Real database servers for the test suites that cannot be faked.

Two-phase commit, replication and crash recovery only mean something against
real servers, so this module starts throw-away PostgreSQL clusters and talks to
the MariaDB service of the machine:

* ``PostgresCluster`` - a private cluster in a temporary directory, on a free
  loopback port, with prepared transactions enabled and every statement logged.
* ``start_replica(primary)`` / ``wait_replicated(primary, replica)`` - a
  streaming hot standby of such a cluster.
* ``MariaDB`` - the already running service on 127.0.0.1:3306.
* ``servers_required()`` - whether a missing server is a failure (CI) or a skip.

It is plain Python, without pytest, so that a script or a REPL can use it too;
``server_fixtures.py`` turns it into fixtures.  The drivers (psycopg, PyMySQL)
are imported only when used, so that the module imports without them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import itertools
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "MariaDB",
    "PostgresCluster",
    "ServerUnavailable",
    "find_pg_bindir",
    "free_port",
    "servers_required",
    "start_replica",
    "unique_name",
    "wait_replicated",
]

REQUIRE_ENV = "DBROUTER_REQUIRE_SERVERS"
PG_BIN_ENV = "DBROUTER_PG_BIN"
TMP_PREFIX = "dbrouter-pg-"

# Applied on top of initdb's postgresql.conf.  Durability is traded for speed
# (fsync, full_page_writes, synchronous_commit): the data is thrown away, and
# PREPARE TRANSACTION / COMMIT PREPARED flush WAL whatever synchronous_commit
# says, so prepared transactions still survive kill().  An ordinary COMMIT
# made in the last few hundred milliseconds before kill() may be lost; a test
# that needs it to survive should run ``SET synchronous_commit = on`` first.
DEFAULT_SETTINGS: dict[str, object] = {
    "max_prepared_transactions": 20,
    "wal_level": "replica",
    "max_wal_senders": 5,
    # Lets a stopped replica catch up again instead of needing a new base
    # backup, which failure tests rely on.
    "wal_keep_size": "128MB",
    # A standby retries a lost primary every 5s by default; failure tests that
    # restart the primary would spend most of their time waiting for that.
    "wal_retrieve_retry_interval": "250ms",
    "fsync": False,
    "synchronous_commit": False,
    "full_page_writes": False,
    "shared_buffers": "32MB",
    "log_statement": "all",
    # User and database in each line, so that a test can pick out the
    # statements of its own database from a shared cluster's log.
    "log_line_prefix": "%m [%p] %q%u@%d ",
    # Without the collector, backends write their log lines themselves before
    # answering, so the log is complete as soon as a statement has returned.
    "logging_collector": False,
    "log_destination": "stderr",
    "lc_messages": "C",
    "timezone": "UTC",
    "log_timezone": "UTC",
}

PG_HBA = """\
# Written by tests/_servers.py: trust, and loopback only.
local   all           all                   trust
local   replication   all                   trust
host    all           all      127.0.0.1/32 trust
host    replication   all      127.0.0.1/32 trust
"""

_PG_CONNECT_TIMEOUT = 5
_START_TIMEOUT = 60


class ServerUnavailable(RuntimeError):
    """A server could not be started or reached; the message says why."""


def servers_required() -> bool:
    """True when a missing server must fail the run rather than skip tests."""
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


_names = itertools.count(1)


def unique_name(prefix: str = "t") -> str:
    """A database name no other test, run or xdist worker will pick.

    The pid tells runs apart, the counter tests within a run, and the random
    part guards against pid reuse on a server that outlives many runs.
    """
    return f"{prefix}_{os.getpid()}_{next(_names)}_{secrets.token_hex(3)}"


_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _check_name(name: str) -> str:
    # Names end up in URLs and DDL; refusing odd ones beats quoting them twice.
    if not _VALID_NAME.match(name):
        raise ValueError(f"unsupported database name {name!r}")
    return name


_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it; ports already given to a cluster of this process are
    skipped because the kernel may hand out a port again once it is closed.
    """
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise ServerUnavailable("no free port found on 127.0.0.1")


def find_pg_bindir() -> Path:
    """The directory holding initdb, pg_ctl and pg_basebackup.

    $DBROUTER_PG_BIN wins; then the newest Debian-style
    /usr/lib/postgresql/<version>/bin; then whatever initdb is on PATH.
    """
    candidates = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True)
    candidates.extend(Path(p) for p in versioned)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return directory
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; "
        f"set {PG_BIN_ENV} to their directory"
    )


# --- processes --------------------------------------------------------------
#
# pg_ctl leaves the postmaster orphaned on purpose.  Where the init process does
# not reap orphans (this kind of machine: PID 1 is not a real init), every
# stopped or killed postmaster would stay a zombie, and a zombie's pid in
# postmaster.pid makes the next start refuse ("is another postmaster
# running?").  Making this process a child subreaper (Linux) brings the
# orphans back to us, and we reap the ones that are postgres processes.

_PR_SET_CHILD_SUBREAPER = 36
_subreaper_tried = False


def _become_subreaper() -> None:
    global _subreaper_tried
    if _subreaper_tried or not sys.platform.startswith("linux"):
        return
    _subreaper_tried = True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _proc_stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, command name) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses; it ends at the last ")".
    head, _, rest = raw.rpartition(")")
    fields = rest.split()
    return fields[0], int(fields[1]), head.partition("(")[2]


def _alive(pid: int) -> bool:
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found.append(int(entry.name))
    return found


def _reap_postgres_zombies() -> None:
    """Collect exit statuses of postgres processes that were orphaned to us.

    Only dead postgres processes are waited for, so the subprocess module never
    loses the status of a child it is waiting for itself.
    """
    for pid in _children(os.getpid()):
        stat = _proc_stat(pid)
        if stat is not None and stat[0] == "Z" and stat[2] == "postgres":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _wait_dead(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap_postgres_zombies()
        if not any(_alive(pid) for pid in pids):
            _reap_postgres_zombies()  # some may have died since the last pass
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# --- PostgreSQL -------------------------------------------------------------


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _import_psycopg():
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise ServerUnavailable(f"psycopg is not installed: {exc}") from exc
    return psycopg


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory.

    Nothing happens until ``start()``.  The cluster listens on 127.0.0.1 only,
    on a port chosen once and kept across ``stop()``/``kill()``/``start()``,
    so URLs handed out earlier stay valid.  ``settings`` override
    ``DEFAULT_SETTINGS`` (e.g. ``{"max_prepared_transactions": 0}`` for a
    cluster without two-phase commit).

    initdb refuses to run as root, so when this process is root every server
    program runs as ``os_user`` and the directory is handed over to it.

    Files: ``base_dir`` holds the unix socket and ``data_dir`` (base_dir/data, a
    copy of one initdb per process), which holds ``log_path``
    (data/postgresql.log, the server's stderr: the statement log).
    """

    def __init__(
        self,
        name: str = "pg",
        *,
        settings: dict[str, object] | None = None,
        bindir: str | Path | None = None,
        os_user: str = "postgres",
    ):
        self.name = name
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._bindir = Path(bindir) if bindir else None
        self.os_user = os_user
        self.port: int | None = None
        self.role = "primary"
        self.primary: PostgresCluster | None = None  # set on replicas
        # The owner pid in the name lets a later run find and remove clusters
        # of a run that was killed before its atexit handler could run.
        self.base_dir = Path(
            tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{name}-")
        )
        self.data_dir = self.base_dir / "data"
        self.log_path = self.data_dir / "postgresql.log"
        _register(self)
        self._prepare_base_dir()

    def __repr__(self) -> str:
        return f"<PostgresCluster {self.name} port={self.port} {self.base_dir}>"

    def __enter__(self) -> PostgresCluster:
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    # -- running server programs --

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    def _as_server_user(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        if shutil.which("runuser"):
            return ["runuser", "-u", self.os_user, "--", *cmd]
        return ["su", self.os_user, "-s", "/bin/sh", "-c", shlex.join(cmd)]

    def _prepare_base_dir(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam(self.os_user)
        except KeyError:
            raise ServerUnavailable(
                f"running as root and there is no {self.os_user!r} OS user "
                "to run initdb as"
            )
        os.chown(self.base_dir, user.pw_uid, user.pw_gid)

    def _run(self, tool: str, *args: str, timeout: float = _START_TIMEOUT) -> str:
        """Run a PostgreSQL program as the server user; its stdout."""
        return self._run_cmd([str(self.bindir / tool), *args], tool, timeout)

    def _run_cmd(self, cmd: list[str], what: str, timeout: float) -> str:
        cmd = self._as_server_user(cmd)
        # PG* variables of the caller must not redirect the tools elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.base_dir,  # the server user may not be able to read ours
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerUnavailable(f"{what} failed: {exc}") from exc
        if proc.returncode != 0:
            raise ServerUnavailable(
                f"{what} exited with {proc.returncode}: "
                f"{(proc.stdout + proc.stderr).strip()}{self._log_tail()}"
            )
        return proc.stdout

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- server log ---\n" + "\n".join(tail) if tail else ""

    # -- life cycle --

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def start(self) -> PostgresCluster:
        """Create the data directory on first use, start, wait for connections."""
        if self.is_running():
            return self
        _become_subreaper()
        if not self.initialized:
            # Copying a pristine initdb takes a fraction of initdb's time.
            template = _template_for(self)
            self._run_cmd(
                ["cp", "-a", str(template.data_dir), str(self.data_dir)],
                "cp",
                _START_TIMEOUT,
            )
        first_start = self.port is None
        for attempt in range(3):
            if self.port is None:
                self.port = free_port()
            self._configure()
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "-w",
                    "-t",
                    str(_START_TIMEOUT),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                )
                return self
            except ServerUnavailable as exc:
                # Another process may take the port between free_port() and
                # the server's bind; only the first start may move elsewhere,
                # since later starts must keep URLs valid.
                if not first_start or "could not bind" not in str(exc) or attempt == 2:
                    raise
                self.port = None
        return self

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # nothing here has to survive a power cut
        )

    def _configure(self) -> None:
        settings = {
            **self.settings,
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.base_dir),
        }
        lines = [f"{key} = {_conf_value(value)}" for key, value in settings.items()]
        self._write(self.data_dir / "dbrouter.conf", "\n".join(lines) + "\n")
        main_conf = self.data_dir / "postgresql.conf"
        include = "include = 'dbrouter.conf'"
        if include not in main_conf.read_text():
            with main_conf.open("a") as conf:
                conf.write("\n# Settings of tests/_servers.py, last so they win.\n")
                conf.write(include + "\n")
        self._write(self.data_dir / "pg_hba.conf", PG_HBA)

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if os.geteuid() == 0:
            user = pwd.getpwnam(self.os_user)
            os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o600)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, or None."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        pid = self.pid
        return pid is not None and _alive(pid)

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop in the given mode (smart, fast or immediate)."""
        pid = self.pid
        if pid is None or not _alive(pid):
            self._remove_stale_locks()
            return
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir))
        # pg_ctl returns once postmaster.pid is gone, a moment before the
        # postmaster has exited.
        _wait_dead([pid], timeout=10)
        self._remove_stale_locks()

    def kill(self) -> None:
        """Crash the cluster: SIGKILL the postmaster and all its processes.

        The whole process tree goes at once, as in a power cut or an OOM kill
        of the machine, so that no backend can write anything afterwards and
        the next ``start()`` runs crash recovery.  Children are killed too
        because a backend that outlives its postmaster keeps the shared memory
        in use and the next start would refuse to run.
        """
        pid = self.pid
        if pid is None or not _alive(pid):
            raise RuntimeError(f"{self!r} is not running")
        # Frozen first, so that it cannot fork while its children are listed.
        os.kill(pid, signal.SIGSTOP)
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if not _wait_dead([pid, *children], timeout=10):
            raise RuntimeError(f"processes of {self!r} survived SIGKILL")
        self._remove_stale_locks()

    def _remove_stale_locks(self) -> None:
        # A dead postmaster's lock files are harmless unless its pid is still a
        # zombie (not reaped), which the next postmaster takes for a live one.
        locks = [self.data_dir / "postmaster.pid"]
        if self.port is not None:
            locks.append(self.base_dir / f".s.PGSQL.{self.port}.lock")
        for lock in locks:
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if not _alive(pid):
                lock.unlink(missing_ok=True)

    def restart(self, mode: str = "fast") -> PostgresCluster:
        self.stop(mode)
        return self.start()

    def cleanup(self) -> None:
        """Stop the server (immediately, the data is discarded) and delete it all.

        Safe to call more than once and on a cluster that never started.
        """
        try:
            if self.is_running():
                try:
                    self.stop("immediate")
                except ServerUnavailable:
                    self.kill()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            _unregister(self)

    # -- using the server --

    def url(self, dbname: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """An SQLAlchemy URL for a database of this cluster, as the postgres user."""
        if self.port is None:
            raise RuntimeError(f"{self!r} has not been started")
        return f"{driver}://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs):
        """A psycopg connection, autocommit unless told otherwise."""
        psycopg = _import_psycopg()
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", _PG_CONNECT_TIMEOUT)
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, **kwargs
        )

    def execute(self, sql: str, params=None, dbname: str = "postgres") -> list[tuple]:
        """Run one statement in autocommit on a fresh connection; rows if any."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name when none is given) and return its name."""
        name = _check_name(name or unique_name())
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def prepared_transactions(self, dbname: str | None = None) -> list[str]:
        """GIDs in pg_prepared_xacts, of one database or of all."""
        if dbname is None:
            rows = self.execute("SELECT gid FROM pg_prepared_xacts ORDER BY gid")
        else:
            rows = self.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE database = %s ORDER BY gid",
                (dbname,),
            )
        return [gid for (gid,) in rows]

    def drop_database(self, name: str) -> None:
        """Drop a database even if a test left connections or prepared xacts in it."""
        _check_name(name)
        exists = self.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not exists:
            return
        # Prepared transactions block DROP DATABASE even WITH (FORCE), and can
        # only be finished from a session in their own database.
        gids = self.prepared_transactions(name)
        if gids:
            sql = _import_psycopg().sql
            with self.connect(name) as conn:
                for gid in gids:
                    conn.execute(
                        sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid))
                    )
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_size(self) -> int:
        """The statement log's size now; pass it to log_text(since=...) later."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """The server log (every statement, log_statement = 'all') so far.

        Lines look like ``<time> [<pid>] postgres@<db> LOG:  statement: ...``;
        statements sent with parameters (psycopg, SQLAlchemy) appear as
        ``execute <unnamed>: ...``.
        """
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


_templates: dict[tuple[Path, str], PostgresCluster] = {}


def _template_for(cluster: PostgresCluster) -> PostgresCluster:
    """A never started, freshly initdb'ed cluster to copy new clusters from.

    One per process (and per bindir and OS user), deleted with the clusters.
    The copies share initdb's system identifier, which only matters for
    replication, and a replica is a copy of its primary anyway.
    """
    key = (cluster.bindir, cluster.os_user)
    template = _templates.get(key)
    if template is None or not template.initialized:
        template = PostgresCluster(
            "template", bindir=cluster.bindir, os_user=cluster.os_user
        )
        _templates[key] = template
        template._initdb()
    return template


def start_replica(
    primary: PostgresCluster, name: str = "replica", timeout: float = 30
) -> PostgresCluster:
    """A hot standby streaming from ``primary``, started and caught up.

    pg_basebackup -R writes standby.signal and primary_conninfo; the primary's
    settings are reused because a standby needs max_prepared_transactions and
    max_connections at least as high as its primary's.
    """
    replica = PostgresCluster(
        name, settings=primary.settings, bindir=primary.bindir, os_user=primary.os_user
    )
    replica.role = "replica"
    replica.primary = primary
    try:
        replica._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(replica.data_dir),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",  # the default spread checkpoint takes minutes
            "--no-sync",
        )
        # The base backup copied the primary's log file; start the replica's
        # own log empty so log_text() shows only what the replica did.
        replica.log_path.write_text("")
        replica.start()
        wait_replicated(primary, replica, timeout=timeout)
    except BaseException:
        replica.cleanup()
        raise
    return replica


def wait_replicated(
    primary: PostgresCluster, replica: PostgresCluster, timeout: float = 10
) -> str:
    """Wait until the replica has replayed everything committed on the primary.

    With synchronous_commit = off a commit may still sit in unflushed WAL, and a
    walsender only sends flushed WAL; so first a tiny synchronously committed
    write (a WAL message, no table needed) flushes all WAL before it, and its
    flush position is the target.  Returns that LSN.
    """
    with primary.connect() as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, 'dbrouter-tests', 'sync')")
        target = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with replica.connect() as conn:
        while True:
            replayed, caught_up = conn.execute(
                "SELECT pg_last_wal_replay_lsn(),"
                " pg_last_wal_replay_lsn() >= %s::pg_lsn",
                (str(target),),
            ).fetchone()
            if replayed is None:
                raise RuntimeError(f"{replica!r} is not a standby")
            if caught_up:
                return str(target)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{replica!r} replayed up to {replayed}, primary is at {target} "
                    f"after {timeout}s"
                )
            time.sleep(0.02)


# --- MariaDB ----------------------------------------------------------------


def _import_pymysql():
    try:
        import pymysql
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise ServerUnavailable(f"PyMySQL is not installed: {exc}") from exc
    return pymysql


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


# --- clean-up ---------------------------------------------------------------

_clusters: list[PostgresCluster] = []
_cleanup_installed = False


def _register(cluster: PostgresCluster) -> None:
    global _cleanup_installed
    if not _cleanup_installed:
        _cleanup_installed = True
        _remove_abandoned_clusters()
        atexit.register(cleanup_all)
        _die_cleanly_on_signals()
    _clusters.append(cluster)


def _unregister(cluster: PostgresCluster) -> None:
    with contextlib.suppress(ValueError):
        _clusters.remove(cluster)


def cleanup_all() -> None:
    """Stop and delete every cluster of this process; newest first (replicas)."""
    for cluster in reversed(list(_clusters)):
        with contextlib.suppress(Exception):
            cluster.cleanup()
    _reap_postgres_zombies()


def _die_cleanly_on_signals() -> None:
    # atexit handlers do not run when SIGTERM or SIGHUP ends the process (a CI
    # timeout, a closed terminal).  The handler cleans up, then dies of the
    # same signal as it would have: raising SystemExit instead would only fail
    # the current test, since pytest catches it and goes on.  A handler
    # someone else installed is left alone.
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _clean_up_and_die)


def _clean_up_and_die(signum, frame) -> None:
    cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _remove_abandoned_clusters() -> None:
    """Stop and delete clusters whose owning process died without cleaning up.

    That happens when a test run is SIGKILLed; without this its postmasters
    would run until the machine stops.
    """
    pattern = os.path.join(tempfile.gettempdir(), f"{TMP_PREFIX}*")
    for base in glob.glob(pattern):
        match = re.match(rf"{re.escape(TMP_PREFIX)}(\d+)-", os.path.basename(base))
        if not match or int(match.group(1)) == os.getpid():
            continue
        if _alive(int(match.group(1))):
            continue
        pid_file = Path(base, "data", "postmaster.pid")
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            # The pid may have been reused by an unrelated process since.
            if _alive(pid) and str(Path(base, "data")).encode() in cmdline:
                doomed = [pid, *_children(pid)]
                for victim in doomed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                _wait_dead(doomed, timeout=5)
        shutil.rmtree(base, ignore_errors=True)
