"""dbrouter_replica on a real PostgreSQL primary streaming to a hot standby
(``pg_basebackup -R``): lag made by pausing WAL replay on the standby, and
the standby stopped (``pg_ctl stop -m immediate``) in the middle of requests.

Which server answered is asked through the same session
(``SELECT pg_is_in_recovery()``, true on the standby only), and what each
server ran is read from its statement log (``log_statement = all``).
"""

import contextlib
import re
import time

import pytest
from replica_app import Note, make_app
from sqlalchemy import make_url, select

import _servers
from dbrouter_replica import get_replicas
from pyramid_dbrouter import bind_of, session_scope

pytestmark = pytest.mark.servers

WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.I)


def settings_for(pg_db, pg_replica, **extra):
    name = make_url(pg_db).database
    settings = {
        "sqlalchemy.url": pg_db,
        "sqlalchemy.replica1.url": pg_replica.url(name) + "?connect_timeout=2",
        "dbrouter.replica.replicas": "replica1",
        "dbrouter.replica.secret": "a-secret-for-the-tests-only",
        "dbrouter.replica.max_lag_seconds": "30",
        "dbrouter.replica.check_seconds": "0.2",
        "dbrouter.replica.pin_seconds": "31",
        "dbrouter.replica.cooldown_seconds": "1",
    }
    settings.update(extra)
    return settings


@pytest.fixture
def app(pg_primary, pg_replica, pg_db):
    testapp, registry = make_app(settings_for(pg_db, pg_replica))
    testapp.post("/notes", {"id": 1, "text": "first"})
    _servers.wait_replicated(pg_primary, pg_replica)
    yield testapp, registry
    registry["dbrouter"].engines.dispose()


@contextlib.contextmanager
def replay_paused(pg_replica):
    pg_replica.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        pg_replica.execute("SELECT pg_wal_replay_resume()")


def other_client(testapp):
    return testapp.__class__(testapp.app)


def statements(cluster, since, dbname):
    """The statements *cluster* ran in database *dbname* since *since* (their
    first lines: ``statement: SQL`` or ``execute <unnamed>: SQL``)."""
    found = []
    for line in cluster.log_text(since).splitlines():
        if f"@{dbname} " not in line:
            continue
        match = re.search(r"LOG:\s+(?:statement|execute [^:]*): (.*)", line)
        if match:
            found.append(match.group(1))
    return found


def test_a_writer_reads_its_row_at_once_while_others_read_the_replica(app, pg_replica):
    testapp, _registry = app
    assert other_client(testapp).get("/notes/1?where=1").json == {
        "text": "first",
        "in_recovery": True,
    }
    with replay_paused(pg_replica):
        testapp.post("/notes", {"id": 2, "text": "mine"})
        # the writer, pinned by its cookie: the primary has the row
        assert testapp.get("/notes/2?where=1").json == {
            "text": "mine",
            "in_recovery": False,
        }
        # another client reads the replica, which has not replayed it yet
        assert other_client(testapp).get("/notes/2?where=1").json == {
            "text": None,
            "in_recovery": True,
        }


def test_in_one_transaction_a_read_after_a_write_sees_the_write(app, pg_replica):
    _testapp, registry = app
    with replay_paused(pg_replica), session_scope(registry) as session:
        assert session.get(Note, 1).text == "first"
        session.add(Note(id=3, text="new"))
        session.flush()
        assert session.scalars(select(Note).where(Note.id == 3)).one().text == "new"
        assert session.scalar(select(Note.text).where(Note.id == 3)) == "new"


def test_an_object_read_from_the_replica_is_written_to_the_primary(
    app, pg_primary, pg_replica, pg_db
):
    testapp, registry = app
    dbname = make_url(pg_db).database
    primary_log, replica_log = pg_primary.log_size(), pg_replica.log_size()
    other_client(testapp).post("/notes/1/edit", {"text": "edited"})
    on_replica = statements(pg_replica, replica_log, dbname)
    on_primary = statements(pg_primary, primary_log, dbname)
    assert "FROM notes" in pg_replica.log_text(replica_log)  # read there...
    assert [s for s in on_replica if WRITES.search(s)] == []  # ...never written
    assert any(s.startswith("UPDATE notes") for s in on_primary)
    with session_scope(registry) as session:
        note = session.scalars(select(Note)).one()
        assert bind_of(note) == "default"


def test_the_replica_stopped_in_the_middle_of_500_requests(app, pg_replica, pg_db):
    testapp, registry = app
    reader = other_client(testapp)
    served_by, failed = [], 0
    try:
        for i in range(500):
            if i == 150:
                pg_replica.stop(mode="immediate")
            if i == 300:
                pg_replica.start()
            response = reader.get("/notes/1?where=1", expect_errors=True)
            if response.status_int != 200 or response.json["text"] != "first":
                failed += 1
                continue
            served_by.append("replica" if response.json["in_recovery"] else "primary")
            if i >= 300:
                time.sleep(0.01)  # leave the cool-down time to end
    finally:
        if not pg_replica.is_running():
            pg_replica.start()
    assert failed == 0
    assert set(served_by[:150]) == {"replica"}
    assert set(served_by[150:300]) == {"primary"}  # the cool-down, again and again
    assert served_by[-1] == "replica"  # back once restarted
    print(
        f"replica stopped at request 150, restarted at 300: 0 failed of 500; "
        f"{served_by.count('primary')} served by the primary"
    )


def test_replay_paused_past_max_lag_moves_reads_to_the_primary_and_back(
    pg_primary, pg_replica, pg_db
):
    testapp, registry = make_app(
        settings_for(
            pg_db,
            pg_replica,
            **{
                "dbrouter.replica.max_lag_seconds": "1",
                "dbrouter.replica.pin_seconds": "2",
            },
        )
    )
    try:
        testapp.post("/notes", {"id": 1, "text": "first"})
        _servers.wait_replicated(pg_primary, pg_replica)
        reader = other_client(testapp)
        assert reader.get("/notes/1?where=1").json["in_recovery"] is True
        with replay_paused(pg_replica):
            testapp.post("/notes", {"id": 2, "text": "while paused"})
            time.sleep(1.5)
            # measured lag > 1 s: the replica is out, reads see the primary
            assert reader.get("/notes/2?where=1").json == {
                "text": "while paused",
                "in_recovery": False,
            }
            lag = get_replicas(registry).health.state("replica1").lag
            assert lag > 1
        _servers.wait_replicated(pg_primary, pg_replica)
        deadline = time.monotonic() + 10
        while reader.get("/notes/2?where=1").json["in_recovery"] is not True:
            assert time.monotonic() < deadline, "reads never went back to the replica"
            time.sleep(0.1)
        assert get_replicas(registry).health.state("replica1").lag < 1
    finally:
        registry["dbrouter"].engines.dispose()
