"""Two shards written in one request, on two PostgreSQL servers, commit
together with the core's two-phase commit."""

from pyramid.config import Configurator
from shard_models import Base, User, counting
from sqlalchemy import create_engine, delete, text, update
from webtest import TestApp

from pyramid_dbrouter import get_engines, init_db, session_scope


def add_two_users(request):
    request.dbsession.add_all([User(id=10, name="ten"), User(id=11, name="eleven")])
    return {"ok": True}


def make_app(pg_primary, pg_db, pg_db2):
    config = Configurator(
        settings={
            "sqlalchemy.url": pg_primary.url(pg_primary.create_database()),
            "sqlalchemy.shard0.url": pg_db,
            "sqlalchemy.shard1.url": pg_db2,
            "dbrouter.shard.shards": "shard0 shard1",
        }
    )
    config.include("pyramid_dbrouter")
    config.include("dbrouter_shard")
    config.add_route("users", "/users")
    config.add_view(add_two_users, route_name="users", renderer="json")
    app = config.make_wsgi_app()
    init_db(config.registry, Base.metadata)
    return config.registry, app


def test_two_shards_in_one_request_commit_in_two_phases(pg_primary, pg_db, pg_db2):
    registry, app = make_app(pg_primary, pg_db, pg_db2)
    with counting(registry) as sent:
        TestApp(app).post("/users", status=200)
    assert [s.split()[0] for s in sent["shard0"]] == ["INSERT"]
    assert [s.split()[0] for s in sent["shard1"]] == ["INSERT"]
    # the commit decision the coordinator (default) recorded between the
    # PREPAREs and the COMMIT PREPAREDs, naming both shards' branches
    coordinator = create_engine(get_engines(registry)["default"].url)
    with coordinator.connect() as conn:
        rows = conn.execute(text("SELECT decision, branches FROM dbrouter_decisions"))
        ((decision, branches),) = rows.all()
    coordinator.dispose()
    assert decision == "commit"
    assert "shard0" in branches and "shard1" in branches
    assert pg_primary.prepared_transactions() == []
    for url, expected in ((pg_db, [(10, "ten")]), (pg_db2, [(11, "eleven")])):
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, name FROM shard_users")).all() == (
                expected
            )
        engine.dispose()


def shard_names(url):
    engine = create_engine(url)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT id, name FROM shard_users ORDER BY id"))
        names = names.all()
    engine.dispose()
    return names


def updates(sent):
    """``{engine: number of UPDATEs}`` of the statements *sent*."""
    counts = {
        name: sum(s.startswith("UPDATE") for s in sql) for name, sql in sent.items()
    }
    return {name: n for name, n in counts.items() if n}


def test_an_unpinned_bulk_update_runs_on_every_shard_and_commits_together(
    pg_primary, pg_db, pg_db2
):
    registry, app = make_app(pg_primary, pg_db, pg_db2)
    TestApp(app).post("/users", status=200)
    with counting(registry) as sent:
        with session_scope(registry) as session:
            result = session.execute(
                update(User).where(User.name != "x").values(name="renamed")
            )
            assert result.rowcount == 2  # one row on each shard
    assert updates(sent) == {"shard0": 1, "shard1": 1}
    assert shard_names(pg_db) == [(10, "renamed")]
    assert shard_names(pg_db2) == [(11, "renamed")]
    assert pg_primary.prepared_transactions() == []


def test_a_pinned_bulk_write_touches_only_its_shard(pg_primary, pg_db, pg_db2):
    registry, app = make_app(pg_primary, pg_db, pg_db2)
    TestApp(app).post("/users", status=200)
    with counting(registry) as sent:
        with session_scope(registry) as session:
            session.execute(update(User).where(User.id == 11).values(name="pinned"))
    assert updates(sent) == {"shard1": 1}
    with counting(registry) as sent:
        with session_scope(registry) as session:
            deleted = session.execute(
                delete(User).where(User.name == "ten").returning(User.id)
            ).all()
    assert deleted == [(10,)]
    assert {n: [s.split()[0] for s in sql] for n, sql in sent.items()} == {
        "shard0": ["DELETE"],
        "shard1": ["DELETE"],
    }
    assert shard_names(pg_db) == []
    assert shard_names(pg_db2) == [(11, "pinned")]
