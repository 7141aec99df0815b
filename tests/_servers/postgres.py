"""A private PostgreSQL cluster: started, stopped, crashed, and used."""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .cleanup import TMP_PREFIX, _register, _unregister
from .common import (
    ServerUnavailable,
    _check_name,
    free_port,
    import_driver,
    unique_name,
)
from .pg_setup import (
    DEFAULT_SETTINGS,
    PG_HBA,
    _conf_value,
    _template_for,
    find_pg_bindir,
)
from .processes import _alive, _become_subreaper, _children, _wait_dead

_PG_CONNECT_TIMEOUT = 5
_START_TIMEOUT = 60


def _import_psycopg():
    return import_driver("psycopg", "psycopg")


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
                conf.write("\n# Settings of tests/_servers, last so they win.\n")
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
