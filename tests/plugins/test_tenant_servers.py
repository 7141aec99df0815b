"""The ``schema`` and ``database`` modes on a real PostgreSQL server: a
schema (or database) per tenant, two tenants written in one request and
committed together, the pool bounded however many tenants are touched."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy
import webtest
from sqlalchemy import event, select, text
from tenant_app import AlbumBase, Photo, make_app

from dbrouter_tenant import create_tenant, list_tenants, remove_tenant, tenant_scope
from dbrouter_tenant.servers import TenantSchemaEngine
from pyramid_dbrouter import get_engines

pytest_plugins = ("tenant_support",)


ACTIVITY = "SELECT count(*) FROM pg_stat_activity WHERE datname = :d"


def schema_app(url, **settings):
    app = make_app(
        {"sqlalchemy.url": url, "dbrouter.tenant.mode": "schema", **settings}
    )
    return webtest.TestApp(app), app.registry


def schema_titles(url, schema):
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.scalars(text(f'SELECT title FROM "{schema}".photos ORDER BY id'))
        return list(rows)


def test_schema_mode_gives_each_tenant_its_own_schema(pg_db):
    testapp, registry = schema_app(pg_db)
    for album in ("summer", "winter"):
        create_tenant(registry, album)
        testapp.post(f"/albums/{album}/photos", {"title": f"{album} photo"})
    assert list_tenants(registry) == ["summer", "winter"]
    assert schema_titles(pg_db, "tenant_summer") == ["summer photo"]
    assert testapp.get("/albums/winter/photos").json["photos"] == ["winter photo"]
    testapp.get("/albums/spring/photos", status=404)
    # the tenant engine is a translate-map copy of default: same pool
    engine = registry["dbrouter"].engines.get("tenant:summer")
    assert isinstance(engine, TenantSchemaEngine)
    assert engine.pool is get_engines(registry)["default"].pool
    remove_tenant(registry, "winter")
    assert list_tenants(registry) == ["summer"]
    testapp.get("/albums/winter/photos", status=404)
    registry["dbrouter"].engines.dispose()


def test_a_schema_tenant_miss_makes_no_pool_and_compiles_nothing_again(pg_db):
    testapp, registry = schema_app(pg_db, **{"dbrouter.max_dynamic_engines": "1"})
    base = get_engines(registry)["default"]
    for album in ("x", "y"):
        create_tenant(registry, album)
    compiled = []

    def note(conn, cursor, sql, params, context, executemany):
        if "photos" in sql:
            compiled.append(context.compiled)

    event.listen(base, "before_cursor_execute", note)
    for album in ("x", "y", "x"):  # an LRU of one: every tenant a miss
        with tenant_scope(registry, album) as dbsession:
            assert dbsession.scalars(select(Photo.title)).all() == []
            engine = dbsession.get_bind(Photo)
            assert engine.pool is base.pool
    event.remove(base, "before_cursor_execute", note)
    # one SELECT compiled once: the schema is rendered at execution
    assert len(compiled) == 3 and len({id(c) for c in compiled}) == 1
    registry["dbrouter"].engines.dispose()


def test_two_tenants_written_in_one_request_commit_together(pg_db, pg_primary):
    testapp, registry = schema_app(pg_db)
    for album in ("a", "b"):
        create_tenant(registry, album)
    testapp.post("/albums/a/both", {"to": "b", "title": "together"})
    assert schema_titles(pg_db, "tenant_a") == ["together"]
    assert schema_titles(pg_db, "tenant_b") == ["together"]
    # the second write collides with b's row 1: neither album keeps anything
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        testapp.post("/albums/a/both", {"to": "b", "title": "never", "id": "1"})
    assert schema_titles(pg_db, "tenant_a") == ["together"]
    assert schema_titles(pg_db, "tenant_b") == ["together"]
    database = sqlalchemy.make_url(pg_db).database
    assert pg_primary.prepared_transactions(database) == []
    registry["dbrouter"].engines.dispose()


def test_1000_schema_tenants_stay_within_the_pool(pg_db):
    testapp, registry = schema_app(pg_db, **{"sqlalchemy.pool_size": "4"})
    base = get_engines(registry)["default"]
    pool = base.pool
    albums = [f"s{n:04d}" for n in range(1000)]
    with base.begin() as conn:  # the schemas at once (create_tenant is per tenant)
        for album in albums:
            conn.execute(sqlalchemy.schema.CreateSchema(f"tenant_{album}"))
            translated = conn.execution_options(
                schema_translate_map={None: f"tenant_{album}"}
            )
            AlbumBase.metadata.create_all(translated)
    database = sqlalchemy.make_url(pg_db).database
    peak = {"server": 0, "out": 0}
    lock = threading.Lock()
    watcher = sqlalchemy.create_engine(pg_db, poolclass=sqlalchemy.pool.NullPool)

    def touch(album):
        with tenant_scope(registry, album) as dbsession:
            dbsession.add(Photo(title=album))
            dbsession.flush()
            out = pool.checkedout()
        with lock:
            peak["out"] = max(peak["out"], out)

    with ThreadPoolExecutor(max_workers=8) as workers:
        for n, _ in enumerate(workers.map(touch, albums)):
            if n % 100 == 0:
                with watcher.connect() as conn:
                    count = conn.scalar(
                        text(ACTIVITY),
                        {"d": database},
                    )
                peak["server"] = max(peak["server"], count - 1)  # not the watcher's
    limit = pool.size() + pool._max_overflow
    assert base.pool is pool  # never disposed by an evicted tenant
    assert peak["out"] <= limit
    assert peak["server"] <= limit
    with tenant_scope(registry, "s0999") as dbsession:
        assert dbsession.scalars(select(Photo.title)).all() == ["s0999"]
    registry["dbrouter"].engines.dispose()
    watcher.dispose()


@pytest.fixture
def database_app(pg_primary):
    """The album application in database mode on pg_primary, with a name
    prefix of the test's own; its databases are dropped afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    app = make_app(
        {
            "sqlalchemy.url": pg_primary.url(pg_primary.create_database()),
            "dbrouter.tenant.mode": "database",
            "dbrouter.tenant.url": pg_primary.url("postgres"),
            "dbrouter.tenant.name_prefix": prefix,
        }
    )
    yield webtest.TestApp(app), app.registry, prefix
    app.registry["dbrouter"].engines.dispose()
    for key in list_tenants(app.registry):
        remove_tenant(app.registry, key)


def test_database_mode_a_database_per_tenant(database_app, pg_primary):
    testapp, registry, prefix = database_app
    for album in ("north", "south"):
        create_tenant(registry, album)
        testapp.post(f"/albums/{album}/photos", {"title": f"{album} photo"})
    assert list_tenants(registry) == ["north", "south"]
    assert pg_primary.execute("SELECT title FROM photos", dbname=prefix + "north") == [
        ("north photo",)
    ]
    testapp.get("/albums/east/photos", status=404)
    # two databases written in one request: a two-phase commit
    testapp.post("/albums/north/both", {"to": "south", "title": "both"})
    assert testapp.get("/albums/south/photos").json["photos"] == [
        "south photo",
        "both",
    ]
    # DROP DATABASE fails while a connection is open: removal closed the pool
    remove_tenant(registry, "north")
    assert list_tenants(registry) == ["south"]
    testapp.get("/albums/north/photos", status=404)
