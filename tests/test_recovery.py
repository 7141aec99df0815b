"""Crashes in the middle of a two-phase commit, and ``dbrouter recover``.

A request writes one row to each of two databases and is stopped at a
chosen point of its commit: the process killed with SIGKILL (in a
subprocess, tests/fault_worker.py), a database server stopped, or a
backend connection terminated.  Then ``dbrouter recover`` runs, from an ini
file naming the same databases, and for every scenario:

* every database holds the transaction's row, or none does -- which one is
  decided by the commit point, the decision row: before it is committed,
  none; after, all;
* no prepared branch of the application is left on any server;
* a second ``dbrouter recover`` finds nothing to do;
* once the decision is COMMIT, no ``ROLLBACK PREPARED`` of the transaction
  ever reaches PostgreSQL (read from the servers' statement logs).

The last part holds unit-level tests of recovery itself: ``--dry-run``,
``--older-than``, presumed abort, unknown transaction ids, and branches of
other applications.

The applications of this module use a transaction-id prefix of this run's
own (``PREFIX``): MariaDB lists XA branches server-wide, and other test runs
may use the service at the same time.
"""

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import webtest
from sqlalchemy import create_engine, insert, inspect, make_url, select
from sqlalchemy.exc import IntegrityError, OperationalError

import pyramid_dbrouter.recovery as recovery
import pyramid_dbrouter.twophase as twophase
import server_fixtures
from pyramid_dbrouter import cli, get_engines
from twophase_app import count, create_tables, make_app

pytestmark = pytest.mark.servers

HERE = Path(__file__).parent
#: this run's ``dbrouter.xid_prefix``: XA branches are visible server-wide on
#: MariaDB, and other test runs may use the service at the same time
PREFIX = f"faults{os.getpid()}"
WORKER_TIMEOUT = 60

#: the two outcomes a transaction may have; anything else is partial
ALL, NONE = "all", "none"

#: scenario runs and partial outcomes of this module, reported at its end
TALLY = {"runs": 0, "partial": 0}

# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def tally(request):
    """Report, after the module, how many fault scenarios ran and how many
    left a partial outcome (a database with the row, another without)."""
    yield TALLY
    line = (
        f"fault-injection scenario runs: {TALLY['runs']}, "
        f"partial outcomes: {TALLY['partial']}"
    )
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")
    else:  # pragma: no cover - pytest without its terminal
        print(line)
    assert TALLY["partial"] == 0, line


def outcome(counts):
    """ALL when every database holds the row once, NONE when none does;
    a partial outcome is counted, and returned as the counts themselves."""
    TALLY["runs"] += 1
    values = set(counts.values())
    if values == {1}:
        return ALL
    if values == {0}:
        return NONE
    TALLY["partial"] += 1
    return counts


def counts_of(engines, note):
    return {name: count(url, note) for name, url in engines.items()}


@pytest.fixture
def sqlite_url(tmp_path):
    """An SQLite database in a file: the last resource of a two-phase commit."""
    return f"sqlite:///{tmp_path}/lite.sqlite"


def write_ini(path, engines, **settings):
    """An ini file for fault_app with *engines* (``{name: url}``) and this
    run's prefix; more *settings* (None removes one)."""
    settings = {"dbrouter.xid_prefix": PREFIX, **settings}
    lines = ["[app:main]", "use = call:fault_app:main"]
    for name, url in engines.items():
        key = "sqlalchemy.url" if name == "default" else f"sqlalchemy.{name}.url"
        lines.append(f"{key} = {url}")
    lines += [f"{k} = {v}" for k, v in settings.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@dataclass
class Recovery:
    code: int
    out: str
    err: str

    @property
    def lines(self):
        return self.out.splitlines()


def run_recover(capsys, ini, *options):
    """``dbrouter recover INI OPTIONS`` through the command line's main()."""
    capsys.readouterr()
    code = cli.main(["recover", ini, *options])
    captured = capsys.readouterr()
    return Recovery(code, captured.out, captured.err)


def assert_nothing_left_to_recover(capsys, ini):
    """A second recover finds no branch of this application, and succeeds."""
    again = run_recover(capsys, ini)
    assert again.code == 0, again
    assert again.lines == ["no prepared branch of this application"], again


def our_branches(maria=None, databases=()):
    """This application's prepared branches: on PostgreSQL in *databases*
    (``[(cluster, dbname)]``), on MariaDB on the whole server."""
    left = []
    for cluster, dbname in databases:
        left += [
            gid
            for gid in cluster.prepared_transactions(dbname)
            if gid.startswith(f"{PREFIX}:")
        ]
    if maria is not None:
        left += [
            gtrid.decode()
            for _, gtrid, _ in maria.xa_recover()
            if gtrid.startswith(f"{PREFIX}:".encode())
        ]
    return left


def maria_name(engines):
    (name,) = [n for n, url in engines.items() if url.startswith("mysql")]
    return name


def wait_disconnected(maria, dbname):
    """Wait until no connection uses *dbname* (a killed client's ones end
    when the server notices)."""
    deadline = time.monotonic() + 10
    while maria.execute(
        "SELECT 1 FROM information_schema.processlist WHERE db = %s", (dbname,)
    ):
        assert time.monotonic() < deadline, f"connections to {dbname} stayed"
        time.sleep(0.01)


def wait_gone(maria, thread):
    """Wait until the MariaDB connection *thread* has ended."""
    deadline = time.monotonic() + 10
    while maria.execute(
        "SELECT 1 FROM information_schema.processlist WHERE id = %s", (thread,)
    ):
        assert time.monotonic() < deadline, f"connection {thread} stayed"
        time.sleep(0.01)


class StatementLogs:
    """What the PostgreSQL servers of a scenario logged from now on."""

    def __init__(self, clusters):
        self.marks = [(cluster, cluster.log_size()) for cluster in clusters]

    def text(self):
        return "".join(cluster.log_text(since=mark) for cluster, mark in self.marks)

    def assert_finished_as(self, gtrid, result, pg_branches):
        """No ROLLBACK PREPARED of *gtrid* once it was decided COMMIT, no
        COMMIT PREPARED otherwise; each PostgreSQL branch committed when
        the outcome is ALL."""
        log = self.text()
        xid = f"{PREFIX}:{gtrid}:"
        if result == ALL:
            assert f"ROLLBACK PREPARED '{xid}" not in log
            for name in pg_branches:
                assert f"COMMIT PREPARED '{xid}{name}'" in log, name
        else:
            assert f"COMMIT PREPARED '{xid}" not in log


def database_of(url):
    return make_url(url).database


# -- a process killed with SIGKILL -----------------------------------------------


@dataclass(frozen=True)
class Topology:
    """Two engines (the first, ``default``, keeps the decisions, unless an
    engine without two-phase support does) and the fixtures giving their URLs."""

    name: str
    fixtures: dict

    def engines(self, request):
        return {
            name: request.getfixturevalue(fixture)
            for name, fixture in self.fixtures.items()
        }


PG_PG = Topology("postgresql+postgresql", {"default": "pg_db", "pg2": "pg_db2"})
PG_MARIA = Topology("postgresql+mariadb", {"default": "pg_db", "maria": "maria_db"})
MARIA_PG = Topology(
    "mariadb-coordinator+postgresql", {"default": "maria_db", "pg": "pg_db"}
)
PG_SQLITE = Topology(
    "postgresql+sqlite-last-resource", {"default": "pg_db", "lite": "sqlite_url"}
)

#: where the cluster of each PostgreSQL database fixture comes from
CLUSTER_OF = {"pg_db": "pg_primary", "pg_db2": "pg_second"}


@dataclass(frozen=True)
class KillPoint:
    """Where the process dies: at the first call of the checkpoint ``at``
    (its name, and its engine or None); and what recovery must make of it."""

    label: str
    at: tuple
    expected: str


def two_phase_points(first, second):
    """Kill points of a commit where both engines prepare, *first* first
    (branches are prepared and committed in the order of engine names)."""
    return [
        KillPoint("after-first-branch-prepared", ("prepared", first), NONE),
        KillPoint("after-all-prepared", ("prepared", second), NONE),
        # on PostgreSQL the decision is about to be sent, elsewhere it is
        # inserted but not committed: no decision, presumed abort
        KillPoint("before-the-decision-commits", ("decision-inserted", None), NONE),
        KillPoint("after-the-decision-committed", ("decided", None), ALL),
        KillPoint("between-the-two-commits", ("committed", first), ALL),
        KillPoint("after-both-committed", ("committed", second), ALL),
    ]


LAST_RESOURCE_POINTS = [
    KillPoint("after-the-branch-prepared", ("prepared", "default"), NONE),
    KillPoint(
        "before-the-last-resource-commits", ("before-last-resource", "lite"), NONE
    ),
    # the decision row commits with the last resource's own row
    KillPoint(
        "after-the-last-resource-committed", ("last-resource-committed", "lite"), ALL
    ),
    KillPoint("after-the-decision", ("decided", None), ALL),
    KillPoint("after-the-branch-committed", ("committed", "default"), ALL),
]

SCENARIOS = [
    *[(PG_PG, point) for point in two_phase_points("default", "pg2")],
    *[(PG_MARIA, point) for point in two_phase_points("default", "maria")],
    *[(MARIA_PG, point) for point in two_phase_points("default", "pg")],
    *[(PG_SQLITE, point) for point in LAST_RESOURCE_POINTS],
]

#: each scenario runs this many times: a crash must be recovered every time
ATTEMPTS = (1, 2)

KILL_RUNS = [
    pytest.param(
        topology, point, attempt, id=f"{topology.name}-{point.label}-{attempt}"
    )
    for topology, point in SCENARIOS
    for attempt in ATTEMPTS
]


def test_the_suite_runs_at_least_36_kill_scenarios():
    assert len(KILL_RUNS) >= 36


def run_worker(engines, note, point, **more):
    """Run tests/fault_worker.py; its return code and last JSON line."""
    job = {
        "engines": engines,
        "note": note,
        "kill_at": point.at[0],
        "engine": point.at[1],
        "settings": {"dbrouter.xid_prefix": PREFIX},
        **more,
    }
    proc = subprocess.run(
        [sys.executable, str(HERE / "fault_worker.py"), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        cwd=HERE,
    )
    lines = proc.stdout.strip().splitlines()
    said = json.loads(lines[-1]) if lines else {}
    return proc, said


@pytest.mark.parametrize(("topology", "point", "attempt"), KILL_RUNS)
def test_a_process_killed_mid_commit_is_recovered_all_or_nothing(
    topology, point, attempt, request, tmp_path, capsys
):
    """SIGKILL at a point of the commit, then ``dbrouter recover``: the row is
    in every database or in none, as the decision says; nothing stays
    prepared; recovering again changes nothing."""
    engines = topology.engines(request)
    create_tables(engines.values())
    clusters = {
        name: request.getfixturevalue(CLUSTER_OF[fixture])
        for name, fixture in topology.fixtures.items()
        if fixture in CLUSTER_OF
    }
    maria = (
        request.getfixturevalue("mariadb")
        if "maria_db" in topology.fixtures.values()
        else None
    )
    logs = StatementLogs(clusters.values())
    note = f"{point.label}-{attempt}"

    proc, said = run_worker(engines, note, point)
    assert proc.returncode == -9, (
        f"the worker was not killed at {point.at} "
        f"(exit {proc.returncode}): {proc.stdout}{proc.stderr}"
    )
    assert (said["killed_at"], said["engine"]) == point.at
    gtrid = said["gtrid"]
    if maria is not None:
        # until MariaDB has noticed, a branch stays attached to the dead
        # client's connection and cannot be finished from another one
        wait_disconnected(maria, database_of(engines[maria_name(engines)]))

    ini = write_ini(tmp_path / "app.ini", engines)
    recovered = run_recover(capsys, ini)
    assert recovered.code == 0, recovered
    verbs = {line.split(f" {PREFIX}:")[0] for line in recovered.lines}
    if point.expected == ALL:
        assert verbs <= {"commit", "no prepared branch of this application"}
    else:
        assert verbs <= {"roll back", "no prepared branch of this application"}

    assert outcome(counts_of(engines, note)) == point.expected
    databases = [
        (clusters[name], database_of(url))
        for name, url in engines.items()
        if name in clusters
    ]
    assert our_branches(maria, databases) == []
    assert_nothing_left_to_recover(capsys, ini)
    logs.assert_finished_as(gtrid, point.expected, pg_branches=list(clusters))


CHANGED_NOTHING_POINTS = [
    KillPoint("after-all-prepared", ("prepared", "maria"), NONE),
    KillPoint("after-the-decision-committed", ("decided", None), ALL),
]


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, id=p.label, marks=()) for p in CHANGED_NOTHING_POINTS],
)
def test_a_mariadb_branch_that_changed_nothing_is_recovered(
    point, pg_db, pg_primary, maria_db, mariadb, tmp_path, capsys
):
    """An UPDATE matching no row makes MariaDB an engine that wrote, so its
    branch is prepared though it changed nothing.  MariaDB lists such a
    branch in XA RECOVER once its client died, but answers XA COMMIT or XA
    ROLLBACK from another connection with XA_RBROLLBACK (1402), and drops
    it: for recovery that is a finished branch, not a failure."""
    engines = {"default": pg_db, "maria": maria_db}
    create_tables(engines.values())
    logs = StatementLogs([pg_primary])

    proc, said = run_worker(
        engines, point.label, point, write=["default"], touch=["maria"]
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr
    wait_disconnected(mariadb, database_of(maria_db))
    assert f"{PREFIX}:{said['gtrid']}:maria".encode() in {
        gtrid for _, gtrid, _ in mariadb.xa_recover()
    }

    ini = write_ini(tmp_path / "app.ini", engines)
    recovered = run_recover(capsys, ini)
    assert recovered.code == 0, recovered
    assert outcome({"default": count(pg_db, point.label)}) == point.expected
    assert our_branches(mariadb, [(pg_primary, database_of(pg_db))]) == []
    assert_nothing_left_to_recover(capsys, ini)
    logs.assert_finished_as(said["gtrid"], point.expected, pg_branches=["default"])


# -- faults inside this process: servers stopped, connections terminated -------


def as_param(case):
    """A case as a test parameter, named after it."""
    return pytest.param(case, id=case.label)


def fault_at(monkeypatch, name, engine, action):
    """Run *action* the first time the commit reaches checkpoint *name* (of
    *engine*, None for the engine-less points); watch the transaction id.

    Returns a dict: ``fired`` (whether the point was reached) and ``gtrid``.
    """
    seen = {"fired": False, "gtrid": None}
    current_gtrid = twophase.current_gtrid

    def watching_gtrid(session):
        seen["gtrid"] = current_gtrid(session)
        return seen["gtrid"]

    def checkpoint(point, engine_name=None):
        if point == name and engine_name == engine and not seen["fired"]:
            seen["fired"] = True
            action()

    monkeypatch.setattr(twophase, "current_gtrid", watching_gtrid)
    monkeypatch.setattr(twophase, "checkpoint", checkpoint)
    return seen


@pytest.fixture
def client():
    """``client(engines)``: a WebTest client of twophase_app over *engines*,
    tables made; its engines are disposed of after the test."""
    apps = []

    def make(engines, **settings):
        create_tables(engines.values())
        app = make_app(engines, **{"dbrouter.xid_prefix": PREFIX, **settings})
        apps.append(app)
        return webtest.TestApp(app)

    yield make
    for app in apps:
        for engine in get_engines(app.registry).values():
            engine.dispose()


@pytest.fixture(scope="module")
def spare_cluster():
    """A PostgreSQL cluster of this module's own, which tests stop and kill
    without disturbing the shared ones."""
    # durable commits: an ordinary COMMIT (the tables, the decision) must
    # survive kill(), which the shared clusters do not promise
    cluster = server_fixtures.start_cluster(
        "faults", settings={"synchronous_commit": True}
    )
    yield cluster
    cluster.cleanup()


@pytest.fixture
def spare_db(spare_cluster):
    """URL of a fresh database on the spare cluster, running at the start."""
    spare_cluster.start()
    name = spare_cluster.create_database()
    yield spare_cluster.url(name)
    spare_cluster.start()
    spare_cluster.drop_database(name)


def criticals(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL]


@dataclass(frozen=True)
class ServerStop:
    """The spare cluster, serving engine ``spare`` (the coordinator
    ``default``, or a second engine named ``spare``), goes down at
    checkpoint ``at``: stopped in a pg_ctl mode, or ``how="kill"``ed."""

    label: str
    spare: str
    at: tuple
    how: str
    request_succeeds: bool
    expected: str
    critical: str | None = None


SERVER_STOPS = [
    # the decision was COMMIT: the request succeeds, the branch waits for recover
    ServerStop(
        "second-server-stopped-before-its-commit-prepared",
        spare="spare",
        at=("before-commit-prepared", "spare"),
        how="immediate",
        request_succeeds=True,
        expected=ALL,
        critical="could not be committed yet",
    ),
    ServerStop(
        "second-server-killed-before-its-commit-prepared",
        spare="spare",
        at=("before-commit-prepared", "spare"),
        how="kill",
        request_succeeds=True,
        expected=ALL,
        critical="could not be committed yet",
    ),
    ServerStop(
        "coordinator-server-stopped-after-the-decision",
        spare="default",
        at=("decided", None),
        how="immediate",
        request_succeeds=True,
        expected=ALL,
        critical="could not be committed yet",
    ),
    # before the decision: the request fails and nothing is committed
    ServerStop(
        "second-server-stopped-before-its-prepare",
        spare="spare",
        at=("before-prepare", "spare"),
        how="immediate",
        request_succeeds=False,
        expected=NONE,
    ),
    ServerStop(
        "coordinator-server-killed-before-the-decision-commits",
        spare="default",
        at=("decision-inserted", None),
        how="kill",
        request_succeeds=False,
        expected=NONE,
        critical="unknown outcome",
    ),
]


@pytest.mark.parametrize(
    "stop",
    [as_param(case) for case in SERVER_STOPS],
)
def test_a_server_stopped_mid_commit_is_recovered_all_or_nothing(
    stop,
    pg_db,
    pg_primary,
    spare_cluster,
    spare_db,
    client,
    tmp_path,
    capsys,
    caplog,
    monkeypatch,
):
    """A database server goes down during the commit.  Once the decision is
    COMMIT the request still succeeds (the branch it could not commit is
    logged CRITICAL and left to recovery); before, the request fails.
    After the server is back and ``dbrouter recover`` ran: all or none."""
    if stop.spare == "default":
        engines = {"default": spare_db, "pg": pg_db}
    else:
        engines = {"default": pg_db, "spare": spare_db}
    app = client(engines)
    logs = StatementLogs([pg_primary, spare_cluster])

    def bring_down():
        if stop.how == "kill":
            spare_cluster.kill()
        else:
            spare_cluster.stop(stop.how)

    seen = fault_at(monkeypatch, *stop.at, bring_down)
    note = stop.label
    with caplog.at_level(logging.ERROR, logger="pyramid_dbrouter"):
        form = {"note": note, "engines": ",".join(engines)}
        if stop.request_succeeds:
            assert app.post("/write", form).json == {"ok": True}
        else:
            with pytest.raises(OperationalError):
                app.post("/write", form)
    assert seen["fired"]
    if stop.critical:
        assert any(stop.critical in message for message in criticals(caplog))
    else:
        assert criticals(caplog) == []

    spare_cluster.start()
    ini = write_ini(tmp_path / "app.ini", engines)
    recovered = run_recover(capsys, ini)
    assert recovered.code == 0, recovered
    assert outcome(counts_of(engines, note)) == stop.expected
    databases = [
        (pg_primary, database_of(pg_db)),
        (spare_cluster, database_of(spare_db)),
    ]
    assert our_branches(None, databases) == []
    assert_nothing_left_to_recover(capsys, ini)
    logs.assert_finished_as(seen["gtrid"], stop.expected, pg_branches=list(engines))


def terminate_backends(cluster, dbname, like="%", not_like=""):
    """``pg_terminate_backend`` the connections to *dbname* whose last
    statement is ``LIKE`` *like* and not ``LIKE`` *not_like*; wait until they
    are gone.  Returns how many there were."""
    pids = cluster.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s "
        "AND pid <> pg_backend_pid() AND query LIKE %s AND query NOT LIKE %s",
        (dbname, like, not_like),
    )
    for (pid,) in pids:
        cluster.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    return len(pids)


def kill_xa_connection(maria, dbname):
    """``KILL`` the MariaDB connection to *dbname* that holds an XA branch,
    and wait until the server has let go of the branch."""
    (thread,) = [
        thread
        for (thread,) in maria.execute(
            "SELECT t.trx_mysql_thread_id FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            "WHERE p.db = %s",
            (dbname,),
        )
    ]
    maria.execute(f"KILL {int(thread)}")
    wait_gone(maria, thread)


@dataclass(frozen=True)
class Termination:
    """The server ends the request's connection to engine ``victim`` at
    checkpoint ``at``.  On PostgreSQL the connection is found by its last
    statement (``like``, ``not_like``); on MariaDB it is the one holding the
    XA branch.  The second engine is ``pg2`` (PostgreSQL) or ``maria``."""

    label: str
    second: str
    at: tuple
    victim: str
    request_succeeds: bool
    expected: str
    critical: str | None = None
    like: str = "%"
    not_like: str = ""


TERMINATIONS = [
    # before the decision: the request fails, nothing is committed
    Termination(
        "second-branch-terminated-before-its-prepare",
        second="pg2",
        at=("prepared", "default"),
        victim="pg2",
        like="INSERT INTO entries%",
        request_succeeds=False,
        expected=NONE,
    ),
    Termination(
        "decision-connection-terminated-before-the-decision-commits",
        second="pg2",
        at=("decision-inserted", None),
        victim="default",
        not_like="PREPARE TRANSACTION%",  # not the branch: the other one
        request_succeeds=False,
        expected=NONE,
        critical="unknown outcome",
    ),
    Termination(
        "mariadb-branch-killed-before-its-prepare",
        second="maria",
        at=("prepared", "default"),
        victim="maria",
        request_succeeds=False,
        expected=NONE,
    ),
    # after the decision: COMMIT is tried again from a new connection
    Termination(
        "second-branch-terminated-after-the-decision",
        second="pg2",
        at=("decided", None),
        victim="pg2",
        like="PREPARE TRANSACTION%",
        request_succeeds=True,
        expected=ALL,
    ),
    Termination(
        "first-branch-terminated-after-the-decision",
        second="pg2",
        at=("decided", None),
        victim="default",
        like="PREPARE TRANSACTION%",
        request_succeeds=True,
        expected=ALL,
    ),
    Termination(
        "mariadb-branch-killed-after-the-decision",
        second="maria",
        at=("decided", None),
        victim="maria",
        request_succeeds=True,
        expected=ALL,
    ),
]


@pytest.mark.parametrize(
    "fault",
    [as_param(case) for case in TERMINATIONS],
)
def test_a_terminated_connection_mid_commit_is_recovered_all_or_nothing(
    fault, request, pg_db, pg_primary, client, tmp_path, capsys, caplog, monkeypatch
):
    """The server ends one of the request's connections during the commit
    (``pg_terminate_backend``, MariaDB's ``KILL``).  Before the decision the
    request fails and nothing is committed; after it, the branch is
    committed from a new connection and the request succeeds."""
    second_fixture = "pg_db2" if fault.second == "pg2" else "maria_db"
    engines = {"default": pg_db, fault.second: request.getfixturevalue(second_fixture)}
    app = client(engines)
    clusters = {"default": pg_primary}
    if fault.second == "pg2":
        clusters["pg2"] = request.getfixturevalue("pg_second")
    maria = request.getfixturevalue("mariadb") if fault.second == "maria" else None
    logs = StatementLogs(clusters.values())

    def terminate():
        dbname = database_of(engines[fault.victim])
        if fault.victim == "maria":
            kill_xa_connection(maria, dbname)
        else:
            cluster = clusters[fault.victim]
            assert terminate_backends(cluster, dbname, fault.like, fault.not_like)

    seen = fault_at(monkeypatch, *fault.at, terminate)
    note = fault.label
    form = {"note": note, "engines": ",".join(engines)}
    with caplog.at_level(logging.ERROR, logger="pyramid_dbrouter"):
        if fault.request_succeeds:
            assert app.post("/write", form).json == {"ok": True}
        else:
            with pytest.raises(OperationalError):
                app.post("/write", form)
    assert seen["fired"]
    if fault.critical:
        assert any(fault.critical in message for message in criticals(caplog))
    else:
        assert criticals(caplog) == []
    if fault.request_succeeds:  # the first COMMIT failed, a retry did it
        assert any("COMMIT of prepared branch" in m for m in caplog.messages)

    ini = write_ini(tmp_path / "app.ini", engines)
    recovered = run_recover(capsys, ini)
    assert recovered.code == 0, recovered
    assert outcome(counts_of(engines, note)) == fault.expected
    databases = [(clusters[n], database_of(engines[n])) for n in clusters]
    assert our_branches(maria, databases) == []
    assert_nothing_left_to_recover(capsys, ini)
    logs.assert_finished_as(seen["gtrid"], fault.expected, pg_branches=list(clusters))


# -- recovery itself ------------------------------------------------------------


def prepare_on_postgresql(cluster, dbname, xid, note=None):
    """Leave a prepared branch *xid* in *dbname*, as a crashed process would:
    with a row of *note* in ``entries`` when a note is given."""
    with cluster.connect(dbname, autocommit=False) as conn:
        if note is not None:
            conn.execute("INSERT INTO entries (note) VALUES (%s)", (note,))
        conn.execute(f"PREPARE TRANSACTION '{xid}'")


def prepare_on_mariadb(maria, dbname, xid, note=None):
    """The same on MariaDB; returns once the server has let go of the branch
    (until then another connection cannot finish it)."""
    with maria.connect(dbname) as conn, conn.cursor() as cur:
        thread = conn.thread_id()
        cur.execute(f"XA START '{xid}'")
        if note is not None:
            cur.execute("INSERT INTO entries (note) VALUES (%s)", (note,))
        cur.execute(f"XA END '{xid}'")
        cur.execute(f"XA PREPARE '{xid}'")
    wait_gone(maria, thread)


def record_decision(url, gtrid, decision):
    """Write a decision row, as a coordinator would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            twophase.decisions.create(conn, checkfirst=True)
            conn.execute(
                insert(twophase.decisions),
                {
                    "gtrid": f"{PREFIX}:{gtrid}",
                    "decision": decision,
                    "branches": "",
                    "created": datetime.now(UTC).replace(tzinfo=None),
                },
            )
    finally:
        engine.dispose()


def decisions_on(url):
    """``{gtrid: decision}`` of the decision table on *url*."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("dbrouter_decisions"):
                return {}
            rows = conn.execute(
                select(twophase.decisions.c.gtrid, twophase.decisions.c.decision)
            )
            return dict(rows.all())
    finally:
        engine.dispose()


@pytest.fixture
def pg_pg(pg_db, pg_db2, pg_primary, pg_second, tmp_path):
    """Two PostgreSQL engines, tables made, an ini file naming them, and
    where each engine's database is: ``(engines, ini, places)``."""
    engines = {"default": pg_db, "pg2": pg_db2}
    create_tables(engines.values())
    places = {
        "default": (pg_primary, database_of(pg_db)),
        "pg2": (pg_second, database_of(pg_db2)),
    }
    return engines, write_ini(tmp_path / "app.ini", engines), places


def prepared_in(places):
    return sorted(our_branches(None, places.values()))


def test_dry_run_reports_and_changes_nothing(pg_pg, capsys):
    """``--dry-run`` says what it would do and exits 0; the branches stay
    prepared and no decision is written.  Run for real afterwards, the
    branches decided COMMIT are committed and the others rolled back."""
    engines, ini, places = pg_pg
    record_decision(engines["default"], "c0ffee", "commit")
    for name, (cluster, dbname) in places.items():
        prepare_on_postgresql(cluster, dbname, f"{PREFIX}:c0ffee:{name}", "decided")
    prepare_on_postgresql(*places["pg2"], f"{PREFIX}:abba:pg2", "undecided")
    branches = prepared_in(places)

    dry = run_recover(capsys, ini, "--dry-run")

    assert dry.code == 0, dry
    assert sorted(dry.lines) == [
        f"would commit {PREFIX}:c0ffee:default",
        f"would commit {PREFIX}:c0ffee:pg2",
        f"would roll back {PREFIX}:abba:pg2",
    ]
    assert prepared_in(places) == branches
    assert decisions_on(engines["default"]) == {f"{PREFIX}:c0ffee": "commit"}
    assert counts_of(engines, "decided") == {"default": 0, "pg2": 0}

    real = run_recover(capsys, ini)

    assert real.code == 0, real
    assert sorted(real.lines) == [
        f"commit {PREFIX}:c0ffee:default",
        f"commit {PREFIX}:c0ffee:pg2",
        f"roll back {PREFIX}:abba:pg2",
    ]
    assert counts_of(engines, "decided") == {"default": 1, "pg2": 1}
    assert counts_of(engines, "undecided") == {"default": 0, "pg2": 0}
    assert prepared_in(places) == []
    # the finished COMMIT is forgotten; the ABORT stays, against a late coordinator
    assert decisions_on(engines["default"]) == {f"{PREFIX}:abba": "abort"}
    assert_nothing_left_to_recover(capsys, ini)


def test_older_than_leaves_a_fresh_branch_alone(pg_pg, capsys):
    """A branch younger than ``--older-than`` may belong to a commit still
    running: it is left alone, and since it remains the exit status is not
    0.  Once it is old enough, it is resolved."""
    engines, ini, places = pg_pg
    prepare_on_postgresql(*places["default"], f"{PREFIX}:f4e54:default", "fresh")

    young = run_recover(capsys, ini, "--older-than", "3600")

    assert young.code != 0, young
    assert f"left (younger than --older-than) {PREFIX}:f4e54:default" in young.lines
    assert prepared_in(places) == [f"{PREFIX}:f4e54:default"]
    assert decisions_on(engines["default"]) == {}

    time.sleep(1.2)
    old = run_recover(capsys, ini, "--older-than", "1")

    assert old.code == 0, old
    assert old.lines == [f"roll back {PREFIX}:f4e54:default"]
    assert prepared_in(places) == []


def test_presumed_abort_records_an_abort_decision_first(pg_pg, pg_primary, capsys):
    """A branch without a decision is rolled back -- after an ABORT decision
    is committed on the coordinator, so that a coordinator still running
    cannot then decide COMMIT; the ABORT row stays."""
    engines, ini, places = pg_pg
    prepare_on_postgresql(*places["default"], f"{PREFIX}:0bad:default", "orphan")
    mark = pg_primary.log_size()

    recovered = run_recover(capsys, ini)

    assert recovered.code == 0, recovered
    assert recovered.lines == [f"roll back {PREFIX}:0bad:default"]
    assert decisions_on(engines["default"]) == {f"{PREFIX}:0bad": "abort"}
    log = pg_primary.log_text(since=mark)
    recorded = log.index("INSERT INTO dbrouter_decisions")
    parameters = log.index("DETAIL", recorded)
    assert f"'{PREFIX}:0bad'" in log[parameters : log.index("\n", parameters)]
    assert recorded < log.index(f"ROLLBACK PREPARED '{PREFIX}:0bad:default'")
    assert counts_of(engines, "orphan") == {"default": 0, "pg2": 0}


def test_a_recover_racing_a_running_commit_wins_with_abort(
    pg_pg, client, capsys, caplog, monkeypatch
):
    """Recovery runs while a request's branches are all prepared but its
    decision not yet written (what ``--older-than`` is there to avoid).
    Recovery records ABORT and rolls them back; the request then cannot
    record COMMIT: it fails, and nothing is committed anywhere."""
    engines, ini, places = pg_pg
    app = client(engines)
    during = {}

    def recover_now():
        during["recovery"] = run_recover(capsys, ini)

    seen = fault_at(monkeypatch, "prepared", "pg2", recover_now)
    with pytest.raises(IntegrityError):
        app.post("/write", {"note": "raced", "engines": "default,pg2"})

    gtrid = seen["gtrid"]
    assert during["recovery"].code == 0, during["recovery"]
    assert sorted(during["recovery"].lines) == [
        f"roll back {PREFIX}:{gtrid}:default",
        f"roll back {PREFIX}:{gtrid}:pg2",
    ]
    assert outcome(counts_of(engines, "raced")) == NONE
    assert decisions_on(engines["default"]) == {f"{PREFIX}:{gtrid}": "abort"}
    assert prepared_in(places) == []
    assert_nothing_left_to_recover(capsys, ini)


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_an_unknown_transaction_id_counts_as_resolved(
    server, request, pg_db, pg_primary, tmp_path, capsys, monkeypatch
):
    """A branch finished by someone else between recovery's listing and its
    COMMIT ("unknown transaction id") is taken as resolved: exit 0."""
    if server == "postgresql":
        name, url = "pg2", request.getfixturevalue("pg_db2")
        cluster = request.getfixturevalue("pg_second")
    else:
        name, url = "maria", request.getfixturevalue("maria_db")
        maria = request.getfixturevalue("mariadb")
    engines = {"default": pg_db, name: url}
    create_tables(engines.values())
    ini = write_ini(tmp_path / "app.ini", engines)
    xid = f"{PREFIX}:5eed:{name}"
    record_decision(pg_db, "5eed", "commit")
    if server == "postgresql":
        prepare_on_postgresql(cluster, database_of(url), xid, "by hand")
    else:
        prepare_on_mariadb(maria, database_of(url), xid, "by hand")

    finish = recovery._finish_recovered
    refused = []

    def finished_by_hand_first(engine, driver, xid_, decision):
        if server == "postgresql":
            cluster.execute(f"COMMIT PREPARED '{xid_}'", dbname=database_of(url))
        else:
            maria.execute(f"XA COMMIT '{xid_}'")
        try:
            finish(engine, driver, xid_, decision)
        except Exception as exc:
            refused.append(driver.is_unknown_xid(exc))
            raise

    monkeypatch.setattr(recovery, "_finish_recovered", finished_by_hand_first)
    recovered = run_recover(capsys, ini)

    assert refused == [True]
    assert recovered.code == 0, recovered
    assert recovered.lines == [f"commit {xid}"]
    assert count(url, "by hand") == 1
    monkeypatch.undo()
    assert_nothing_left_to_recover(capsys, ini)


def test_a_decision_without_a_branch_is_nothing_to_recover(pg_pg, capsys):
    """Decisions whose branches are all finished need nothing."""
    engines, ini, _places = pg_pg
    record_decision(engines["default"], "d0ne", "commit")
    assert_nothing_left_to_recover(capsys, ini)


def test_recover_touches_only_this_applications_branches(
    pg_db, pg_primary, maria_db, mariadb, tmp_path, capsys
):
    """Branches of other prefixes, and branches of this prefix in another
    database of the same PostgreSQL server, are left alone."""
    engines = {"default": pg_db, "maria": maria_db}
    create_tables(engines.values())
    ini = write_ini(tmp_path / "app.ini", engines)
    dbname = database_of(pg_db)
    other_db = pg_primary.create_database()
    maria_xid = f"otherapp:{database_of(maria_db)}:y"
    foreign = [
        (dbname, "otherapp:x:y"),
        (dbname, f"{PREFIX}x:x:default"),  # a prefix that begins with ours
        (other_db, f"{PREFIX}:e15e:default"),
    ]
    try:
        for db, xid in foreign:
            prepare_on_postgresql(pg_primary, db, xid)
        # with a row: MariaDB drops a branch that changed nothing
        prepare_on_mariadb(mariadb, database_of(maria_db), maria_xid, "other")

        recovered = run_recover(capsys, ini)

        assert recovered.code == 0, recovered
        assert recovered.lines == ["no prepared branch of this application"]
        left = set(pg_primary.prepared_transactions())
        assert {xid for _, xid in foreign} <= left
        assert maria_xid.encode() in {gtrid for _, gtrid, _ in mariadb.xa_recover()}
    finally:
        for db, xid in foreign:
            if xid in pg_primary.prepared_transactions(db):
                pg_primary.execute(f"ROLLBACK PREPARED '{xid}'", dbname=db)
        if maria_xid.encode() in {gtrid for _, gtrid, _ in mariadb.xa_recover()}:
            mariadb.execute(f"XA ROLLBACK '{maria_xid}'")
        pg_primary.drop_database(other_db)


def test_each_application_recovers_only_its_own_prefix(pg_pg, tmp_path, capsys):
    """Two applications on one database, each with its own
    ``dbrouter.xid_prefix`` (one with the default, ``dbr``): each recover
    resolves its own application's branches only."""
    engines, ini, places = pg_pg
    default_ini = write_ini(
        tmp_path / "default.ini", engines, **{"dbrouter.xid_prefix": None}
    )
    cluster, dbname = places["default"]
    prepare_on_postgresql(cluster, dbname, "dbr:5h0p:default", "theirs")
    prepare_on_postgresql(cluster, dbname, f"{PREFIX}:d8r:default", "ours")

    theirs = run_recover(capsys, default_ini)

    assert theirs.code == 0, theirs
    assert theirs.lines == ["roll back dbr:5h0p:default"]
    assert cluster.prepared_transactions(dbname) == [f"{PREFIX}:d8r:default"]

    ours = run_recover(capsys, ini)

    assert ours.code == 0, ours
    assert ours.lines == [f"roll back {PREFIX}:d8r:default"]
    assert cluster.prepared_transactions(dbname) == []
