"""Two shards written in one request, on two PostgreSQL servers, commit
together with the core's two-phase commit."""

from pyramid.config import Configurator
from shard_models import Base, User, counting
from sqlalchemy import create_engine, text
from webtest import TestApp

from pyramid_dbrouter import get_engines, init_db


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


def test_a_bulk_update_on_every_shard_commits_together(pg_primary, pg_db, pg_db2):
    from sqlalchemy import update

    from dbrouter_shard import get_shards
    from pyramid_dbrouter import session_scope

    registry, app = make_app(pg_primary, pg_db, pg_db2)
    TestApp(app).post("/users", status=200)
    with session_scope(registry) as session:
        matched = get_shards(session).execute_each(
            session, update(User).values(name="renamed")
        )
    assert matched == 2
    for url in (pg_db, pg_db2):
        engine = create_engine(url)
        with engine.connect() as conn:
            names = conn.execute(text("SELECT name FROM shard_users")).scalars().all()
        engine.dispose()
        assert names == ["renamed"]
