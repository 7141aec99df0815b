"""The real-server harness (tests/_servers/, tests/server_fixtures.py) at work.

Each test shows one thing the two-phase commit, replication and failure suites
rely on, the way they should do it.  They are skipped when a server is missing,
unless DBROUTER_REQUIRE_SERVERS=1.
"""

import uuid

import psycopg
import pymysql
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

import _servers
import server_fixtures


def engine_for(url, **kwargs):
    # NullPool: nothing stays connected after a test, so dropping its database
    # (and killing clusters) never waits for pooled connections.
    return create_engine(url, poolclass=NullPool, **kwargs)


def dbname(url):
    return make_url(url).database


# --- PostgreSQL: two-phase commit ---------------------------------------------


@pytest.mark.servers
def test_both_clusters_allow_prepared_transactions(pg_db, pg_db2):
    for url in (pg_db, pg_db2):
        with engine_for(url).connect() as conn:
            setting = conn.execute(text("SHOW max_prepared_transactions")).scalar()
        assert int(setting) > 0


@pytest.mark.servers
@pytest.mark.parametrize("db_fixture", ["pg_db", "pg_db2"])
def test_prepare_then_commit_prepared_through_sqlalchemy(request, db_fixture):
    url = request.getfixturevalue(db_fixture)
    engine = engine_for(url)
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
        conn.commit()

        xact = conn.begin_twophase("x")  # psycopg 3 sends BEGIN ... PREPARE 'x'
        conn.execute(text("INSERT INTO t VALUES (1)"))
        xact.prepare()
        with engine.connect() as other:
            gids = other.execute(text("SELECT gid FROM pg_prepared_xacts")).scalars()
            assert "x" in list(gids)
            # Prepared but not committed: invisible to everyone else.
            assert other.execute(text("SELECT count(*) FROM t")).scalar() == 0
        xact.commit()  # COMMIT PREPARED 'x'

        assert conn.execute(text("SELECT id FROM t")).scalars().all() == [1]


@pytest.mark.servers
def test_prepared_transaction_is_finished_by_a_new_session(pg_primary, pg_db):
    # What a recovering coordinator does: the session that prepared is gone.
    with pg_primary.connect(dbname(pg_db)) as session:
        session.execute("CREATE TABLE t (id int PRIMARY KEY)")
        session.execute("BEGIN")
        session.execute("INSERT INTO t VALUES (1)")
        session.execute("PREPARE TRANSACTION 'x'")
    assert pg_primary.prepared_transactions(dbname(pg_db)) == ["x"]

    # COMMIT PREPARED refuses to run inside a transaction block: autocommit.
    engine = engine_for(pg_db, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("COMMIT PREPARED 'x'"))
        assert conn.execute(text("SELECT id FROM t")).scalars().all() == [1]
    assert pg_primary.prepared_transactions(dbname(pg_db)) == []


@pytest.mark.servers
def test_sqlalchemy_rolls_back_a_prepared_transaction_on_close(pg_primary, pg_db):
    # Closing a Connection ends its TwoPhaseTransaction with ROLLBACK PREPARED;
    # to leave one behind as a crashed coordinator would, invalidate() it.
    engine = engine_for(pg_db)
    with engine.connect() as conn:
        conn.begin_twophase("closed").prepare()
    with engine.connect() as conn:
        conn.begin_twophase("invalidated").prepare()
        conn.invalidate()
    assert pg_primary.prepared_transactions(dbname(pg_db)) == ["invalidated"]
    # The left-over one is rolled back when pg_db drops the database.


@pytest.mark.servers
def test_prepared_transaction_survives_sigkill(pg_second, pg_db2):
    name = dbname(pg_db2)
    with pg_second.connect(name) as session:
        session.execute("CREATE TABLE t (id int PRIMARY KEY)")
        session.execute("BEGIN")
        session.execute("INSERT INTO t VALUES (1)")
        session.execute("PREPARE TRANSACTION 'crash'")

    pg_second.kill()  # SIGKILL, no shutdown checkpoint: a crash
    assert not pg_second.is_running()
    pg_second.start()  # crash recovery, same port: pg_db2 still points at it

    assert pg_second.prepared_transactions(name) == ["crash"]
    pg_second.execute("COMMIT PREPARED 'crash'", dbname=name)
    assert pg_second.execute("SELECT id FROM t", dbname=name) == [(1,)]


# --- PostgreSQL: the statement log --------------------------------------------


@pytest.mark.servers
def test_statement_log_shows_what_ran(pg_primary, pg_db):
    name = dbname(pg_db)
    start = pg_primary.log_size()  # only look at what this test adds
    probe = f"probe-{uuid.uuid4().hex}"
    with engine_for(pg_db).connect() as conn:
        conn.execute(text(f"SELECT '{probe}'"))
        conn.rollback()
        xact = conn.begin_twophase("to-undo")
        xact.prepare()
        xact.rollback()  # ROLLBACK PREPARED 'to-undo'

    log = pg_primary.log_text(since=start)
    assert probe in log
    # Each line names user@database, so a test can tell its statements apart.
    assert any(
        f"postgres@{name} " in line and "ROLLBACK PREPARED 'to-undo'" in line
        for line in log.splitlines()
    )


# --- PostgreSQL: streaming replication ------------------------------------------


@pytest.mark.servers
def test_replica_shows_primary_rows_and_refuses_writes(pg_primary, pg_replica, pg_db):
    with engine_for(pg_db).begin() as conn:
        conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))

    _servers.wait_replicated(pg_primary, pg_replica)

    replica = engine_for(pg_replica.url(dbname(pg_db)))
    with replica.connect() as conn:
        assert conn.execute(text("SELECT id FROM t")).scalars().all() == [1]
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        with pytest.raises(DBAPIError) as refused:
            conn.execute(text("INSERT INTO t VALUES (2)"))
    assert isinstance(refused.value.orig, psycopg.errors.ReadOnlySqlTransaction)


# --- MariaDB: XA ----------------------------------------------------------------


@pytest.mark.servers
def test_mariadb_prepared_xa_branch_is_committed_from_a_new_connection(
    mariadb, maria_db
):
    name = dbname(maria_db)
    # The service is shared: a unique gtrid cannot meet another run's branch.
    gtrid = f"dbrouter-{uuid.uuid4().hex[:16]}"
    coordinator = mariadb.connect(name)
    with coordinator.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute(f"XA START '{gtrid}'")
        cur.execute("INSERT INTO t VALUES (1)")
        cur.execute(f"XA END '{gtrid}'")
        cur.execute(f"XA PREPARE '{gtrid}'")

    # XA RECOVER: formatID, gtrid_length, bqual_length, data - data as bytes.
    assert (1, gtrid.encode(), b"") in mariadb.xa_recover()
    raw = mariadb.execute("XA RECOVER")
    assert any(row[3] == gtrid.encode() for row in raw)

    # While the preparing connection lives, the branch is its own (1397).
    with pytest.raises(pymysql.err.OperationalError) as foreign:
        mariadb.execute(f"XA COMMIT '{gtrid}'")
    assert foreign.value.args[0] == 1397
    coordinator.close()  # the coordinator "crashes"; the branch stays prepared
    assert mariadb.supports_durable_xa()

    engine = engine_for(maria_db)
    # A connection that already ran a statement outside autocommit is inside a
    # local transaction, and XA COMMIT then fails with 1400 XAER_OUTSIDE.
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        with pytest.raises(OperationalError) as outside:
            conn.execute(text(f"XA COMMIT '{gtrid}'"))
        assert outside.value.orig.args[0] == 1400
    # A new autocommit connection can finish it.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"XA COMMIT '{gtrid}'"))
        assert conn.execute(text("SELECT id FROM t")).scalars().all() == [1]
    assert (1, gtrid.encode(), b"") not in mariadb.xa_recover()


@pytest.mark.servers
def test_mariadb_version_decides_durable_xa(mariadb):
    assert mariadb.supports_durable_xa() == (
        not mariadb.is_mariadb or mariadb.version >= (10, 5)
    )
    assert mariadb.url("shop") == (
        f"mysql+pymysql://root@127.0.0.1:{mariadb.port}/shop?charset=utf8mb4"
    )


# --- the harness itself ---------------------------------------------------------


@pytest.mark.servers
def test_databases_of_each_test_are_separate(pg_primary, pg_db, mariadb, maria_db):
    assert dbname(pg_db) != "postgres"
    assert dbname(maria_db) != "test"
    assert pg_primary.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        dbname=dbname(pg_db),
    ) == [(0,)]
    assert mariadb.execute("SHOW TABLES", database=dbname(maria_db)) == []


@pytest.mark.servers
def test_a_cluster_of_ones_own_with_other_settings():
    # For a test that needs a server unlike the shared ones; here one without
    # two-phase commit.  The with block stops it and deletes its directory.
    no2pc = {"max_prepared_transactions": 0}
    with server_fixtures.start_cluster("no2pc", settings=no2pc) as cluster:
        pid, base_dir = cluster.pid, cluster.base_dir
        with cluster.connect() as conn:
            conn.execute("BEGIN")
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                conn.execute("PREPARE TRANSACTION 'no'")
    assert not base_dir.exists()
    assert not _servers._alive(pid)


def test_servers_required_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DBROUTER_REQUIRE_SERVERS", "1")
    assert _servers.servers_required()
    with pytest.raises(pytest.fail.Exception):
        server_fixtures.unavailable("no server")

    monkeypatch.delenv("DBROUTER_REQUIRE_SERVERS")
    assert not _servers.servers_required()
    with pytest.raises(pytest.skip.Exception):
        server_fixtures.unavailable("no server")
