"""Where dbrouter_replica sends reads, on SQLite files (the replica is a
second engine on the primary's file).  The same behaviours on a real
streaming replica are in test_replica_postgres.py."""

import logging

import pytest
from replica_app import Note, count_statements, make_app, sqlite_settings
from sqlalchemy import select

from dbrouter_replica import COOKIE, get_replicas, use_primary
from pyramid_dbrouter import bind_of, session_scope


@pytest.fixture
def app(tmp_path):
    testapp, registry = make_app(sqlite_settings(tmp_path, ("replica1", "replica2")))
    seen = count_statements(registry)
    return testapp, registry, seen


def reads(seen, name):
    return seen[name].count("SELECT")


def test_reads_go_to_the_replicas_in_turn_and_writes_to_the_primary(app):
    testapp, _registry, seen = app
    testapp.post("/notes", {"id": 1, "text": "hello"})
    assert "INSERT" in seen["default"]
    seen.clear()
    fresh = testapp.__class__(testapp.app)  # another client: no pin cookie
    for _ in range(4):
        assert fresh.get("/notes/1").json == {"text": "hello"}
    assert reads(seen, "replica1") == reads(seen, "replica2") == 2
    assert reads(seen, "default") == 0


def test_a_client_that_wrote_reads_from_the_primary_for_pin_seconds(app):
    testapp, registry, seen = app
    response = testapp.post("/notes", {"id": 1, "text": "mine"})
    assert COOKIE in response.headers["Set-Cookie"]
    seen.clear()
    testapp.get("/notes/1")
    assert reads(seen, "default") == 1 and not seen["replica1"] + seen["replica2"]
    # a read-only request does not extend the pin
    assert "Set-Cookie" not in testapp.get("/notes/1").headers


def test_a_forged_or_stale_pin_pins_nothing(app):
    testapp, registry, seen = app
    testapp.post("/notes", {"id": 1, "text": "x"})
    pin = get_replicas(registry).pin
    good = pin.make()
    expires, _, signature = good.partition(".")
    forged = [
        f"{int(expires) + 3600}.{signature}",  # longer, same signature
        f"{expires}.{'0' * 64}",
        "replica1",
        f"99999999999.{signature}",
        "",
    ]
    for value in forged:
        seen.clear()
        testapp.set_cookie(COOKIE, value)
        testapp.get("/notes/1")
        assert reads(seen, "default") == 0, value
    now = pin.clock
    pin.clock = lambda: now() + pin.seconds + 1  # the pin has expired
    try:
        seen.clear()
        testapp.set_cookie(COOKIE, good)
        testapp.get("/notes/1")
        assert reads(seen, "default") == 0
    finally:
        pin.clock = now


def test_in_one_transaction_a_read_after_a_write_sees_the_write(app):
    _testapp, registry, seen = app
    with session_scope(registry) as session:
        assert session.scalars(select(Note)).all() == []
        assert reads(seen, "replica1") + reads(seen, "replica2") == 1
        session.add(Note(id=7, text="new"))  # pending: the read's autoflush writes it
        assert [n.text for n in session.scalars(select(Note))] == ["new"]
        assert reads(seen, "default") == 1
        assert session.scalars(select(Note).where(Note.id == 7)).one().text == "new"
        assert reads(seen, "default") == 2


def test_select_for_update_and_use_primary_read_from_the_primary(app):
    _testapp, registry, seen = app
    with session_scope(registry) as session:
        session.scalars(select(Note).with_for_update()).all()
        assert reads(seen, "default") == 1
        with use_primary():
            session.scalars(select(Note)).all()
        assert reads(seen, "default") == 2

    @use_primary()
    def job():
        with session_scope(registry) as session:
            return session.scalars(select(Note)).all()

    job()
    assert reads(seen, "default") == 3
    assert reads(seen, "replica1") + reads(seen, "replica2") == 0


def test_an_object_read_from_a_replica_is_written_to_the_primary(app):
    testapp, registry, seen = app
    testapp.post("/notes", {"id": 1, "text": "before"})
    seen.clear()
    fresh = testapp.__class__(testapp.app)
    fresh.post("/notes/1/edit", {"text": "after"})
    assert reads(seen, "replica1") + reads(seen, "replica2") == 1
    assert "UPDATE" in seen["default"]
    assert all(verb == "SELECT" for verb in seen["replica1"] + seen["replica2"])
    with session_scope(registry) as session:
        note = session.get(Note, 1)
        assert bind_of(note) == "default" and note.text == "after"


class TestCircuitBreaker:
    def make(self, tmp_path, **extra):
        settings = sqlite_settings(tmp_path, ("replica1", "replica2"), **extra)
        # replica2 cannot be opened: a directory that does not exist
        settings["sqlalchemy.replica2.url"] = f"sqlite:///{tmp_path}/gone/x.db"
        testapp, registry = make_app(settings)
        clock = [1000.0]
        get_replicas(registry).health.clock = lambda: clock[0]
        return testapp, registry, count_statements(registry), clock

    def test_a_replica_that_refuses_connections_is_skipped_for_the_cooldown(
        self, tmp_path, caplog
    ):
        testapp, registry, seen, clock = self.make(tmp_path)
        testapp.post("/notes", {"id": 1, "text": "x"})
        fresh = testapp.__class__(testapp.app)
        with caplog.at_level(logging.WARNING, "dbrouter_replica"):
            for _ in range(6):
                assert fresh.get("/notes/1").json == {"text": "x"}
        assert reads(seen, "replica1") == 6
        out = [r for r in caplog.records if "replica2 is out" in r.getMessage()]
        assert len(out) == 1  # tried once, then skipped without a connect
        status = get_replicas(registry).status()
        assert status["replica2"][0] is False and "unreachable" in status["replica2"][2]
        clock[0] += 11  # after the cool-down it is tried again
        assert get_replicas(registry).status()["replica2"][0] is True

    def test_when_every_replica_is_out_reads_go_to_the_primary_warned_once(
        self, tmp_path, caplog
    ):
        testapp, registry, seen, clock = self.make(tmp_path)
        testapp.post("/notes", {"id": 1, "text": "x"})
        health = get_replicas(registry).health
        health.trip("replica1", "stopped for the test")
        fresh = testapp.__class__(testapp.app)
        seen.clear()
        with caplog.at_level(logging.WARNING, "dbrouter_replica"):
            for _ in range(5):
                assert fresh.get("/notes/1").json == {"text": "x"}
            assert reads(seen, "default") == 5
            every = [r for r in caplog.records if "every replica" in r.getMessage()]
            assert len(every) == 1
            clock[0] += 5  # still in the cool-down: no second warning
            fresh.get("/notes/1")
            assert len([r for r in caplog.records if "every replica" in r.message]) == 1
