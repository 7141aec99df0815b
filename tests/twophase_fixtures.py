"""pytest plugin: the fixtures and helpers of the two-phase and recovery suites.

Loaded from tests/conftest.py, next to ``server_fixtures``.

Databases, by engine name:

* ``databases(default="pg_db", pg2="pg_db2")`` - the URLs of those database
  fixtures, tables made, as a ``Databases`` (a dict of URLs that also knows
  where each PostgreSQL database lives, and the MariaDB service if used);
* ``pg_pg`` - ``databases(default="pg_db", pg2="pg_db2")``;
* ``sqlite_url`` - an SQLite file: a last resource;
* ``spare_cluster`` / ``spare_db`` - a cluster of the module's own, which
  tests stop and kill without disturbing the shared ones.

Requests and recovery:

* ``client(engines, prefix=None, **settings)`` - a WebTest client of
  tests/apps/twophase_app.py over *engines*;
* ``run_recover(ini, *options)`` - ``dbrouter recover`` in this process;
* ``assert_nothing_left_to_recover(ini)``;
* ``assert_all_or_nothing(dbs, note, gtrid, expected)`` - the ending every
  fault scenario shares; ``assert_outcome(counts, expected)`` its core.

Helpers: ``inject_fault(patch, at, action)``, the one place where the suites
reach into pyramid_dbrouter's fault-injection seam; ``post_through_the_fault``;
``our_branches``, ``decisions_on``, ``record_decision``, ``write_ini``,
``wait_gone``.

A fault scenario records its outcome on its test report, and the terminal
summary counts them, so that the count holds under ``pytest -n`` too; tests
using ``databases`` or ``spare_cluster`` get the ``servers`` marker, as those
of server_fixtures do.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import webtest
from sqlalchemy import create_engine, insert, inspect, make_url
from sqlalchemy.exc import OperationalError

import server_fixtures
from pyramid_dbrouter import checkpoints, cli, decisions, get_engines
from twophase_app import count, create_tables, make_app

#: the ``dbrouter.xid_prefix`` of the fault-injection suites, this process's
#: own: MariaDB lists XA branches server-wide, and other test runs (or xdist
#: workers) may use the service at the same time
PREFIX = f"faults{os.getpid()}"

#: the two outcomes a transaction may have; anything else is partial
ALL, NONE = "all", "none"

#: the name of the user property that carries a fault scenario's outcome
OUTCOME = "fault outcome"

#: what ``dbrouter recover`` says when it has nothing to do
NOTHING_TO_DO = "no prepared branch of this application"

#: fixtures that start or reach servers without saying so in their signature
NEEDS_SERVERS = frozenset({"databases", "spare_cluster"})

#: the cluster fixture of each PostgreSQL database fixture
CLUSTER_OF = {"pg_db": "pg_primary", "pg_db2": "pg_second", "spare_db": "spare_cluster"}


def database_of(url):
    return make_url(url).database


# -- databases -----------------------------------------------------------------


class Databases(dict):
    """Engine name -> URL of the databases of a test, tables made.

    ``places``: PostgreSQL engine name -> ``(cluster, database name)``;
    ``maria``: the MariaDB service, when an engine is on it.  The statement
    logs of the clusters are read from the moment the object is made.
    """

    def __init__(self, urls, places, maria=None):
        super().__init__(urls)
        self.places = places
        self.maria = maria
        self._log_marks = [(c, c.log_size()) for c, _db in places.values()]

    def log_text(self):
        """What the PostgreSQL servers logged since these databases were made."""
        return "".join(c.log_text(since=mark) for c, mark in self._log_marks)

    def assert_finished_as(self, gtrid, expected):
        """No ROLLBACK PREPARED of *gtrid* once it was decided COMMIT, no
        COMMIT PREPARED otherwise; each PostgreSQL branch committed when the
        outcome is ALL."""
        log = self.log_text()
        xid = f"{PREFIX}:{gtrid}:"
        if expected == ALL:
            assert f"ROLLBACK PREPARED '{xid}" not in log
            for name in self.places:
                assert f"COMMIT PREPARED '{xid}{name}'" in log, name
        else:
            assert f"COMMIT PREPARED '{xid}" not in log


@pytest.fixture
def databases(request):
    """``databases(name=fixture, ...)`` -> ``Databases`` of those fixtures'
    URLs (``default`` first), tables made."""

    def make(**fixtures):
        urls = {name: request.getfixturevalue(f) for name, f in fixtures.items()}
        places = {
            name: (request.getfixturevalue(CLUSTER_OF[f]), database_of(urls[name]))
            for name, f in fixtures.items()
            if f in CLUSTER_OF
        }
        uses_maria = "maria_db" in fixtures.values()
        maria = request.getfixturevalue("mariadb") if uses_maria else None
        create_tables(urls.values())
        return Databases(urls, places, maria)

    return make


@pytest.fixture
def pg_pg(databases):
    """Two PostgreSQL databases on two servers: ``default`` and ``pg2``."""
    return databases(default="pg_db", pg2="pg_db2")


@pytest.fixture
def sqlite_url(tmp_path):
    """An SQLite database in a file: the last resource of a two-phase commit."""
    return f"sqlite:///{tmp_path}/lite.sqlite"


@pytest.fixture(scope="module")
def spare_cluster():
    """A PostgreSQL cluster of the module's own, which tests stop and kill
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


# -- what is left on the servers -----------------------------------------------


def our_branches(prefix, *places, maria=None):
    """The prepared branches whose ids begin with ``prefix:``: on PostgreSQL
    in each place, a ``(cluster, database name)`` or a whole cluster; on
    MariaDB on the whole server."""
    left = []
    for place in places:
        cluster, dbname = place if isinstance(place, tuple) else (place, None)
        left += [
            gid
            for gid in cluster.prepared_transactions(dbname)
            if gid.startswith(f"{prefix}:")
        ]
    if maria is not None:
        left += [
            gtrid.decode()
            for _, gtrid, _ in maria.xa_recover()
            if gtrid.startswith(f"{prefix}:".encode())
        ]
    return left


def decisions_on(url):
    """``{gtrid: decision}`` of the decision rows kept on *url*."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("dbrouter_decisions"):
                return {}
            rows = conn.exec_driver_sql(
                "SELECT gtrid, decision FROM dbrouter_decisions"
            )
            return dict(rows.all())
    finally:
        engine.dispose()


def record_decision(url, gtrid, decision):
    """Write a decision row of this run's prefix, as a coordinator would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            decisions.table.create(conn, checkfirst=True)
            conn.execute(
                insert(decisions.table),
                {
                    "gtrid": decisions.key(PREFIX, gtrid),
                    "decision": decision,
                    "branches": "",
                    "created": datetime.now(UTC).replace(tzinfo=None),
                },
            )
    finally:
        engine.dispose()


# -- faults --------------------------------------------------------------------


@dataclass
class Fault:
    """What an injected fault saw: whether its point was reached, and the id
    of the transaction being committed (or recovered) there."""

    fired: bool = False
    gtrid: str | None = None


def inject_fault(patch, at, action, occurrence=1):
    """Call *action()* the *occurrence*-th time the commit, or ``dbrouter
    recover``, reaches *at*: ``(Checkpoint, engine name)``, engine None for
    the points without one.  Returns a ``Fault``.

    *patch* is ``monkeypatch.setattr`` in a test, or ``setattr`` in a
    process about to die (tests/apps/fault_worker.py).  This is the one
    place where the suites reach into pyramid_dbrouter: it replaces the seam
    ``checkpoints.reached``.
    """
    fault = Fault()
    reached = 0

    def reach(point, engine=None, gtrid=None):
        nonlocal reached
        if (point, engine) != at:
            return
        fault.gtrid = gtrid
        reached += 1
        if reached == occurrence:
            fault.fired = True
            action()

    patch(checkpoints, "reached", reach)
    return fault


def post_through_the_fault(app, dbs, case, fault, caplog):
    """POST /write of the note ``case.label`` to every engine of *dbs*,
    through the fault of *case* (a recovery_scenarios.InProcessFault) that
    *fault* injected: the fault is reached, the request succeeds or fails
    as the case says, and logs CRITICAL what the case says (or nothing)."""
    form = {"note": case.label, "engines": ",".join(dbs)}
    with caplog.at_level(logging.ERROR, logger="pyramid_dbrouter"):
        if case.request_succeeds:
            assert app.post("/write", form).json == {"ok": True}
        else:
            with pytest.raises(OperationalError):
                app.post("/write", form)
    assert fault.fired
    criticals = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL
    ]
    if case.critical:
        assert any(case.critical in message for message in criticals), criticals
    else:
        assert criticals == []


def wait_gone(maria, thread):
    """Wait until the MariaDB connection *thread* has ended (until then, the
    XA branch it prepared cannot be finished from another connection)."""
    deadline = time.monotonic() + 10
    while maria.execute(
        "SELECT 1 FROM information_schema.processlist WHERE id = %s", (thread,)
    ):
        assert time.monotonic() < deadline, f"connection {thread} stayed"
        time.sleep(0.01)


# -- requests and recovery -----------------------------------------------------


@pytest.fixture
def client():
    """``client(engines, prefix=None, **settings)``: a WebTest client of
    twophase_app over *engines* (``{name: url}``), tables made, with
    ``dbrouter.xid_prefix = prefix`` when given; its engines are disposed of
    after the test."""
    apps = []

    def make(engines, prefix=None, **settings):
        if prefix is not None:
            settings["dbrouter.xid_prefix"] = prefix
        create_tables(engines.values())
        app = make_app(engines, **settings)
        apps.append(app)
        return webtest.TestApp(app)

    yield make
    for app in apps:
        for engine in get_engines(app.registry).values():
            engine.dispose()


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
    """What one ``dbrouter recover`` did: exit status and output."""

    code: int
    out: str
    err: str

    @property
    def lines(self):
        return self.out.splitlines()


@pytest.fixture
def run_recover(capsys):
    """``run_recover(ini, *options)``: ``dbrouter recover INI OPTIONS``
    through the command line's main(), as a ``Recovery``."""

    def run(ini, *options):
        capsys.readouterr()
        code = cli.main(["recover", ini, *options])
        captured = capsys.readouterr()
        return Recovery(code, captured.out, captured.err)

    return run


@pytest.fixture
def assert_nothing_left_to_recover(run_recover):
    """``assert_nothing_left_to_recover(ini)``: a second recover finds no
    branch of this application, and succeeds."""

    def check(ini):
        again = run_recover(ini)
        assert again.code == 0, again
        assert again.lines == [NOTHING_TO_DO], again

    return check


def outcome(counts):
    """ALL when every database holds the row once, NONE when none does;
    anything else (a partial outcome) is returned as the counts themselves."""
    values = set(counts.values())
    if values == {1}:
        return ALL
    if values == {0}:
        return NONE
    return counts


@pytest.fixture
def assert_outcome(record_property):
    """``assert_outcome(counts, expected)``: the rows of a scenario's note
    (``{engine: count}``) are *expected* (ALL or NONE), not partial.  The
    outcome goes on the test's report, for the terminal summary."""

    def check(counts, expected):
        result = outcome(counts)
        record_property(OUTCOME, result if result in (ALL, NONE) else "partial")
        assert result == expected

    return check


@pytest.fixture
def assert_all_or_nothing(
    tmp_path, run_recover, assert_nothing_left_to_recover, assert_outcome
):
    """``assert_all_or_nothing(dbs, note, gtrid, expected, rows_in=None)``:
    the ending of every fault scenario.  ``dbrouter recover`` runs from an
    ini file naming *dbs*, and then:

    * it succeeded, and only committed (ALL) or only rolled back (NONE);
    * every database (those of *rows_in*, if given) holds the row of *note*,
      or none does, as *expected*;
    * no prepared branch of the application is left on any server;
    * a second recover finds nothing to do;
    * once the decision is COMMIT no ``ROLLBACK PREPARED`` of *gtrid* ever
      reached PostgreSQL, and no ``COMMIT PREPARED`` otherwise.
    """

    def check(dbs, note, gtrid, expected, rows_in=None):
        ini = write_ini(tmp_path / "app.ini", dbs)
        recovered = run_recover(ini)
        assert recovered.code == 0, recovered
        verbs = {line.split(f" {PREFIX}:")[0] for line in recovered.lines}
        verb = "commit" if expected == ALL else "roll back"
        assert verbs <= {verb, NOTHING_TO_DO}, recovered

        assert_outcome(
            {name: count(dbs[name], note) for name in rows_in or dbs}, expected
        )
        assert our_branches(PREFIX, *dbs.places.values(), maria=dbs.maria) == []
        assert_nothing_left_to_recover(ini)
        dbs.assert_finished_as(gtrid, expected)

    return check


def pytest_collection_modifyitems(items):
    # as server_fixtures does for its own: -m "not servers" deselects them
    for item in items:
        if NEEDS_SERVERS.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def pytest_terminal_summary(terminalreporter):
    """How many fault scenarios ran, and how many left a partial outcome (a
    database with the row, another without): read from the test reports."""
    outcomes = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == OUTCOME
    ]
    if outcomes:
        terminalreporter.write_line(
            f"fault-injection scenario runs: {len(outcomes)}, "
            f"partial outcomes: {outcomes.count('partial')}"
        )
