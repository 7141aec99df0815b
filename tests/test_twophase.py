"""Two-phase commit across real PostgreSQL and MariaDB servers.

Each request writes one row to each engine it names; afterwards every
database holds the row, or none does, and no prepared branch is left.
"""

import pytest
import webtest
from sqlalchemy import create_engine

from pyramid_dbrouter import UnsafeCommitError
from pyramid_dbrouter.checkpoints import Checkpoint
from pyramid_dbrouter.twophase import TransactionVotedNo
from server_fixtures import unavailable
from twophase_app import count, create_tables, make_app
from twophase_fixtures import decisions_on, inject_fault, our_branches

#: the transaction-id prefix of an application that does not choose one
DBR = "dbr"

pytestmark = pytest.mark.servers


class TestAllOrNothing:
    def test_postgresql_and_postgresql(self, client, pg_pg, pg_primary, pg_second):
        app = client(pg_pg)
        app.post("/write", {"note": "both", "engines": "default,pg2"})
        assert count(pg_pg["default"], "both") == count(pg_pg["pg2"], "both") == 1
        with pytest.raises(RuntimeError):
            app.post("/write", {"note": "none", "engines": "default,pg2", "fail": "1"})
        assert count(pg_pg["default"], "none") == count(pg_pg["pg2"], "none") == 0
        assert our_branches(DBR, pg_primary, pg_second) == []
        assert len(decisions_on(pg_pg["default"])) <= 1

    def test_postgresql_and_mariadb(self, client, pg_db, maria_db, pg_primary, mariadb):
        engines = {"default": pg_db, "maria": maria_db}
        app = client(engines)
        app.post("/write", {"note": "both", "engines": "default,maria"})
        assert count(pg_db, "both") == count(maria_db, "both") == 1
        with pytest.raises(RuntimeError):
            app.post(
                "/write", {"note": "none", "engines": "maria,default", "fail": "1"}
            )
        assert count(pg_db, "none") == count(maria_db, "none") == 0
        assert our_branches(DBR, pg_primary) == []
        assert our_branches(DBR, maria=mariadb) == []

    def test_mariadb_alone_and_as_a_reader(self, client, pg_db, maria_db, mariadb):
        # MariaDB connections begin as XA branches: one that only read is
        # rolled back, one that alone wrote is committed in one phase
        engines = {"default": pg_db, "maria": maria_db}
        app = client(engines)
        app.post("/write", {"note": "pg only", "engines": "default", "read": "maria"})
        app.post(
            "/write", {"note": "maria only", "engines": "maria", "read": "default"}
        )
        assert count(pg_db) == 1 and count(maria_db) == 1
        assert our_branches(DBR, maria=mariadb) == []

    def test_postgresql_and_sqlite_as_last_resource(
        self, client, pg_db, sqlite_url, pg_primary
    ):
        engines = {"default": pg_db, "lite": sqlite_url}
        app = client(engines)
        app.post("/write", {"note": "both", "engines": "default,lite"})
        assert count(pg_db, "both") == count(sqlite_url, "both") == 1
        with pytest.raises(RuntimeError):
            app.post("/write", {"note": "none", "engines": "default,lite", "fail": "1"})
        assert count(pg_db, "none") == count(sqlite_url, "none") == 0
        assert our_branches(DBR, pg_primary) == []
        assert len(decisions_on(sqlite_url)) <= 1

    def test_two_sqlite_writers_are_refused(self, client, pg_db, tmp_path):
        engines = {
            "default": pg_db,
            "one": f"sqlite:///{tmp_path}/one.sqlite",
            "two": f"sqlite:///{tmp_path}/two.sqlite",
        }
        app = client(engines)
        with pytest.raises(UnsafeCommitError, match="'one', 'two'"):
            app.post("/write", {"note": "x", "engines": "default,one,two"})
        assert [count(url) for url in engines.values()] == [0, 0, 0]


def test_only_writers_are_prepared(client, pg_pg, pg_primary, pg_second):
    app = client(pg_pg)
    mark = pg_second.log_size()
    app.post("/write", {"note": "one", "engines": "default", "read": "pg2"})
    assert "PREPARE TRANSACTION" not in pg_second.log_text(since=mark)
    assert count(pg_pg["default"]) == 1
    mark1, mark2 = pg_primary.log_size(), pg_second.log_size()
    app.post("/write", {"note": "two", "engines": "default,pg2"})
    for log in (pg_primary.log_text(since=mark1), pg_second.log_text(since=mark2)):
        assert "PREPARE TRANSACTION 'dbr:" in log
        assert "COMMIT PREPARED 'dbr:" in log
        assert "ROLLBACK PREPARED" not in log


def test_branch_ids_are_correlated(client, pg_pg, pg_primary, pg_second):
    app = client(pg_pg)
    mark1, mark2 = pg_primary.log_size(), pg_second.log_size()
    app.post("/write", {"note": "ids", "engines": "default,pg2"})
    import re

    first = re.search(
        r"PREPARE TRANSACTION 'dbr:(\w+):default'", pg_primary.log_text(mark1)
    )
    second = re.search(
        r"PREPARE TRANSACTION 'dbr:(\w+):pg2'", pg_second.log_text(mark2)
    )
    assert first and second and first.group(1) == second.group(1)


def test_twophase_off_refuses_two_writers(client, pg_pg):
    app = client(pg_pg, **{"dbrouter.twophase": "off"})
    with pytest.raises(UnsafeCommitError, match="dbrouter.twophase = off"):
        app.post("/write", {"note": "x", "engines": "default,pg2"})
    assert count(pg_pg["default"]) == count(pg_pg["pg2"]) == 0


def test_a_server_without_prepared_transactions_is_refused_before_anything(pg_db):
    # the machine's own PostgreSQL service runs with max_prepared_transactions = 0
    service = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    engines = {"default": pg_db, "service": service}
    create_tables([pg_db])
    app = webtest.TestApp(make_app(engines))
    try:
        create_tables([service])
    except Exception as exc:  # pragma: no cover - depends on the machine
        unavailable(f"the PostgreSQL service is not reachable: {exc}")
    before = count(service)
    with pytest.raises(UnsafeCommitError, match="max_prepared_transactions = 0"):
        app.post("/write", {"note": "refused-by-service", "engines": "default,service"})
    assert count(pg_db, "refused-by-service") == 0
    assert count(service) == before


def test_a_caught_error_on_one_branch_never_commits_the_other(client, pg_pg):
    """The stock zope.sqlalchemy two-phase setup committed one database and
    lost the other in 12 of 20 runs of this scenario; here: 100 runs, none."""
    app = client(pg_pg)
    for url in pg_pg.values():
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO entries (note) VALUES ('seed')")
        engine.dispose()
    partial = 0
    for run in range(100):
        fail_on, write_to = ("default", "pg2") if run % 2 else ("pg2", "default")
        note = f"run-{run}"
        with pytest.raises(TransactionVotedNo, match=f"'{fail_on}' rolled"):
            app.post(
                "/caught", {"fail_on": fail_on, "write_to": write_to, "note": note}
            )
        if count(pg_pg[write_to], note) != 0:
            partial += 1
    assert partial == 0


def test_a_serialization_failure_at_prepare_is_retried(client, pg_pg, pg_primary):
    app = client(pg_pg, **{"sqlalchemy.isolation_level": "SERIALIZABLE"})
    mark = pg_primary.log_size()
    response = app.post("/ssi", {"note": "skew"})
    assert response.json == {"attempts": 2}
    log = pg_primary.log_text(since=mark)
    failure = log.index("could not serialize access")
    assert "STATEMENT:  PREPARE TRANSACTION 'dbr:" in log[failure : failure + 600]
    assert count(pg_pg["default"], "b-skew-1") == 0  # the failed attempt
    assert count(pg_pg["default"], "b-skew-2") == 1
    assert count(pg_pg["default"], "a-skew") == 1  # the concurrent transaction
    assert count(pg_pg["pg2"], "skew") == 1


def test_decisions_of_finished_transactions_are_removed(client, pg_pg):
    app = client(pg_pg)
    for run in range(4):
        app.post("/write", {"note": f"n{run}", "engines": "default,pg2"})
        # each decision removes those of the transactions finished before it
        assert len(decisions_on(pg_pg["default"])) == 1


def test_recovery_removes_the_decisions_a_stopped_process_kept(client, pg_pg):
    from datetime import UTC, datetime, timedelta

    from pyramid_dbrouter.recovery import recover

    app = client(pg_pg)
    app.post("/write", {"note": "last", "engines": "default,pg2"})
    assert len(decisions_on(pg_pg["default"])) == 1
    registry = app.app.registry
    assert recover(registry).ok  # too recent: kept
    assert len(decisions_on(pg_pg["default"])) == 1
    later = datetime.now(UTC) + timedelta(hours=2)
    assert recover(registry, now=later).ok
    assert len(decisions_on(pg_pg["default"])) == 0


class Tenants:
    """An engine factory that can list its keys, as the tenant plugin will."""

    def __init__(self, urls):
        self.urls = urls

    def __call__(self, key, settings):
        return self.urls[key]

    def keys(self, settings):
        return sorted(self.urls)


def test_engines_made_on_demand_take_part_and_are_recovered(pg_db, pg_db2, monkeypatch):
    from pyramid_dbrouter.recovery import recover

    urls = {"north": pg_db, "south.eu": pg_db2}
    create_tables(urls.values())
    tenants = Tenants(urls)
    app = webtest.TestApp(make_app({"default": pg_db}, factories={"tenant": tenants}))
    app.post("/write", {"note": "both", "engines": "tenant:north,tenant:south.eu"})
    assert count(pg_db, "both") == count(pg_db2, "both") == 1

    def crash():
        raise RuntimeError("the process dies here")

    inject_fault(monkeypatch.setattr, (Checkpoint.DECIDED, None), crash)
    with pytest.raises(RuntimeError):
        app.post("/write", {"note": "late", "engines": "tenant:north,tenant:south.eu"})
    monkeypatch.undo()
    assert count(pg_db, "late") == count(pg_db2, "late") == 0  # still prepared

    # a new process: no tenant engine is open; the factory lists them
    fresh = make_app({"default": pg_db}, factories={"tenant": tenants})
    report = recover(fresh.registry)
    assert report.ok and len(report.committed) == 2
    assert all(":tenant:" in xid for xid in report.committed)
    assert count(pg_db, "late") == count(pg_db2, "late") == 1
    assert recover(fresh.registry).committed == []


def test_savepoints_inside_a_mariadb_branch(client, pg_db, maria_db):
    import transaction

    from pyramid_dbrouter import get_tm_session
    from twophase_app import Entry

    engines = {"default": pg_db, "maria": maria_db}
    app = client(engines)
    factory = app.app.registry["dbsession_factory"]
    manager = transaction.TransactionManager(explicit=True)
    with manager:
        session = get_tm_session(factory, manager)
        session.using_bind("maria").add(Entry(note="kept"))
        session.flush()
        savepoint = session.begin_nested()
        session.using_bind("maria").add(Entry(note="undone"))
        session.flush()
        savepoint.rollback()
        session.add(Entry(note="pg"))
    assert count(maria_db, "kept") == 1 and count(maria_db, "undone") == 0
    assert count(pg_db, "pg") == 1
