"""An archive per key: ``dbrouter.archive.hot = tenant:*`` and
``dbrouter.archive.archive = archive:*``, on SQLite tenant folders.

The hot engine of a request is the one the tenant plugin's router picks
(``tenant:alps``), its archive ``archive:alps``: reads, ``get()``, the move
(the two-step copy-then-delete of two SQLite files, crash and rerun
included), the copied references, ``allow_migrate``, the start-up checks and
``dbrouter archive --hot``.  (On PostgreSQL, a database per tenant and per
archive, the move is a two-phase commit: tests/test_demo.py's
``test_on_postgresql_archiving_is_a_two_phase_commit_shown_on_the_page``.)
"""

from datetime import datetime

import pytest
import webtest
from archive_tenant_app import (
    Archives,
    Customer,
    Note,
    Order,
    OrderLine,
    create_shop,
    main,
    write_ini,
)
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError, ConfigurationExecutionError
from sqlalchemy import create_engine, select, text

import dbrouter_archive.move as move
from dbrouter_archive import ArchiveMoveError, archive_rows, get_archive
from dbrouter_tenant import NoTenantError, tenant_scope
from pyramid_dbrouter import bind_of, cli, get_state, session_scope
from pyramid_dbrouter.routing import BIND_OPTION

OLD = datetime(2020, 1, 1)


class Crash(Exception):
    pass


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "shops"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(tmp_path, root):
    return {
        "sqlalchemy.url": f"sqlite:///{tmp_path}/shared.sqlite",
        "dbrouter.tenant.root": str(root),
    }


@pytest.fixture
def shops(settings, root):
    """Tenants alps and sea, each with orders 1-4 (two lines each) of its
    own customer -- the same ids in both, different rows."""
    app = main({}, **settings)
    for key in ("alps", "sea"):
        create_shop(app.registry, key, str(root))
        with tenant_scope(app.registry, key) as session:
            session.add(Customer(id=1, name=f"{key} customer"))
            for i in range(1, 5):
                session.add(Order(id=i, customer_id=1, created_at=OLD))
                session.add_all(
                    OrderLine(id=i * 10 + n, order_id=i, sku=f"{key}-{i}-{n}")
                    for n in range(2)
                )
    yield app
    get_state(app.registry).engines.dispose()


def ids(root, key, file, table="orders"):
    engine = create_engine(f"sqlite:///{root}/{key}/{file}")
    with engine.connect() as conn:
        found = list(conn.scalars(text(f"SELECT id FROM {table} ORDER BY id")))
    engine.dispose()
    return found


def test_a_request_moves_its_tenants_rows_to_its_tenants_archive(shops, root):
    app = webtest.TestApp(shops)
    moved = app.post("/shops/alps/archive", {"id": ["1", "2"]}).json
    assert moved == {"moved": 2, "children": 4}
    assert ids(root, "alps", "shop.sqlite") == [3, 4]
    assert ids(root, "alps", "archive.sqlite") == [1, 2]
    assert ids(root, "alps", "archive.sqlite", "order_lines") == [10, 11, 20, 21]
    # the customer is copied, not moved: orders 3 and 4 still refer to it
    assert ids(root, "alps", "shop.sqlite", "customers") == [1]
    assert ids(root, "alps", "archive.sqlite", "customers") == [1]
    # the other tenant is untouched
    assert ids(root, "sea", "shop.sqlite") == [1, 2, 3, 4]
    assert ids(root, "sea", "archive.sqlite") == []
    # submitted again: nothing more to move, nothing duplicated
    assert app.post("/shops/alps/archive", {"id": ["1", "2"]}).json["moved"] == 0
    assert ids(root, "alps", "archive.sqlite") == [1, 2]
    assert ids(root, "alps", "archive.sqlite", "customers") == [1]


def test_reads_join_a_tenants_shop_and_its_archive_only(shops):
    app = webtest.TestApp(shops)
    app.post("/shops/alps/archive", {"id": ["1"]})
    app.post("/shops/sea/archive", {"id": ["4"]})
    assert app.get("/shops/alps/orders").json == {"orders": [1, 2, 3, 4]}
    assert app.get("/shops/sea/orders").json == {"orders": [1, 2, 3, 4]}
    # get(): the shop, then its archive; lazy loads from where it was found
    found = app.get("/shops/alps/orders/1").json
    assert found == {
        "found": True,
        "engine": "archive:alps",
        "customer": "alps customer",
        "lines": ["alps-1-0", "alps-1-1"],
    }
    found = app.get("/shops/sea/orders/1").json
    assert found["engine"] == "tenant:sea" and found["lines"] == ["sea-1-0", "sea-1-1"]
    assert app.get("/shops/sea/orders/4").json["engine"] == "archive:sea"
    assert app.get("/shops/alps/orders/9").json == {"found": False}


def test_a_crash_between_copy_and_delete_then_a_rerun(shops, root, monkeypatch):
    def crash(name):
        if name == "copied":
            raise Crash(name)

    monkeypatch.setattr(move, "checkpoint", crash)
    with pytest.raises(Crash):
        with tenant_scope(shops.registry, "alps") as session:
            archive_rows(session, select(Order).where(Order.id <= 2))
    # the copy committed on its own, the delete rolled back: in both
    assert ids(root, "alps", "shop.sqlite") == [1, 2, 3, 4]
    assert ids(root, "alps", "archive.sqlite") == [1, 2]
    with tenant_scope(shops.registry, "alps") as session:
        # a row in both the shop and its archive is read once, the shop's
        orders = session.scalars(select(Order).order_by(Order.id)).all()
        assert [o.id for o in orders] == [1, 2, 3, 4]
        assert {bind_of(o) for o in orders} == {"tenant:alps"}
        # ...but only within one pair: a read over every shop and its archive
        # keeps each shop's own order 1 (the same id, another row)
        every = ["tenant:alps", "archive:alps", "tenant:sea", "archive:sea"]
        statement = select(Order).execution_options(**{BIND_OPTION: every})
        found = session.scalars(statement).all()
        assert sorted((bind_of(o), o.id) for o in found) == [
            *(("tenant:alps", i) for i in (1, 2, 3, 4)),
            *(("tenant:sea", i) for i in (1, 2, 3, 4)),
        ]
    monkeypatch.setattr(move, "checkpoint", lambda name: None)
    with tenant_scope(shops.registry, "alps") as session:
        moved = archive_rows(session, select(Order).where(Order.id <= 2))
    assert moved.rows == 2
    assert ids(root, "alps", "shop.sqlite") == [3, 4]
    assert ids(root, "alps", "archive.sqlite") == [1, 2]
    assert ids(root, "alps", "archive.sqlite", "order_lines") == [10, 11, 20, 21]


def test_objects_move_from_the_engine_they_were_loaded_from(shops, root):
    with tenant_scope(shops.registry, "sea") as session:
        orders = session.scalars(
            select(Order).where(Order.id == 3).execution_options(fanout_unique="first")
        ).all()
        assert archive_rows(session, orders).rows == 1
        assert orders[0] not in session
    assert ids(root, "sea", "archive.sqlite") == [3]
    # from a script with no tenant, hot= names the engine
    with session_scope(shops.registry) as session:
        statement = select(Order).where(Order.id == 4)
        assert archive_rows(session, statement, hot="tenant:alps").rows == 1
        with pytest.raises(ArchiveMoveError, match="not a hot engine"):
            archive_rows(session, statement, hot="archive:alps")
        with pytest.raises(NoTenantError):  # the tenant router's: no tenant
            archive_rows(session, statement)
    assert ids(root, "alps", "archive.sqlite") == [4]


def test_a_new_child_of_an_archived_row_goes_to_its_archive(shops, root):
    with tenant_scope(shops.registry, "alps") as session:
        archive_rows(session, select(Order).where(Order.id == 1))
    with tenant_scope(shops.registry, "alps") as session:
        order = session.get(Order, 1)
        order.lines.append(OrderLine(id=12, order_id=1, sku="late"))
    with tenant_scope(shops.registry, "alps") as session:
        session.add(Note(text="hot only"))  # another transaction: two SQLite files
    assert ids(root, "alps", "archive.sqlite", "order_lines") == [10, 11, 12]
    assert ids(root, "alps", "shop.sqlite", "order_lines") == [
        20,
        21,
        30,
        31,
        40,
        41,
    ]
    assert ids(root, "alps", "shop.sqlite", "notes") == [1]


def test_allow_migrate_per_key(shops):
    chain = get_state(shops.registry).chain

    def allowed(db, model):
        return chain.allow_migrate(db, model, table=model.__table__)

    assert allowed("archive:alps", Order) is True
    assert allowed("archive:alps", OrderLine) is True
    assert allowed("archive:alps", Customer) is True  # a reference
    assert allowed("archive:alps", Note) is False
    assert allowed("tenant:alps", Order) is True
    assert allowed("tenant:alps", Note) is True  # the tenant router's
    assert allowed("default", Order) is False  # the tenant router's
    archive = get_archive(shops.registry)
    assert archive.archive_of("tenant:alps") == "archive:alps"
    assert archive.is_hot("tenant:x") and not archive.is_hot("archive:x")


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"dbrouter.archive.archive": "archive"},
            "dbrouter.archive.archive: 'archive' with hot 'tenant:*': both are "
            "engine names, or both PREFIX:*",
        ),
        (
            {"dbrouter.archive.archive": "tenant:*"},
            "dbrouter.archive.archive: 'tenant:*' is also the hot engine",
        ),
        (
            {"dbrouter.archive.archive": "cold:*"},
            "dbrouter.archive.archive: 'cold:*': no engine factory has the prefix "
            "'cold'; engine factories: archive, tenant",
        ),
        (
            {"dbrouter.archive.hot": "tenant:x*"},
            "dbrouter.archive.hot: 'tenant:x*' is not an engine name",
        ),
        (
            {"dbrouter.archive.references": "archive_tenant_app:Order"},
            "dbrouter.archive.references: ['Order'] are also archived models",
        ),
    ],
)
def test_bad_per_key_settings_fail_at_start_up(settings, extra, message):
    with pytest.raises((ConfigurationError, ConfigurationExecutionError)) as info:
        main({}, **settings, **extra)
    assert message in str(info.value)


def test_the_archive_router_needs_a_router_after_it(settings):
    folders = Archives(settings["dbrouter.tenant.root"])
    with pytest.raises(ConfigurationExecutionError) as info:
        with Configurator(settings=settings) as config:
            config.include("pyramid_dbrouter")
            config.include("dbrouter_archive")
            config.add_db_engine_factory("tenant", folders)
            config.add_db_engine_factory("archive", folders)
            config.add_db_archive("archive:*", hot="tenant:*", models=[Order])
        config.make_wsgi_app()
    message = "the routers after dbrouter_archive's choose, and there is none"
    assert message in str(info.value)


def test_the_command_needs_the_hot_engine(shops, root, tmp_path, settings, capsys):
    ini = write_ini(tmp_path / "shops.ini", root, settings["sqlalchemy.url"])
    model = "archive_tenant_app:Order"
    capsys.readouterr()
    code = cli.main(["archive", ini, "--model", model, "--where", "id < 3"])
    assert code == 2
    assert (
        "--hot is required: dbrouter.archive.hot is tenant:*" in capsys.readouterr().err
    )
    code = cli.main(
        ["archive", ini, "--model", model, "--where", "id < 3", "--hot", "tenant:nope"]
    )
    assert code == 2
    assert "--hot 'tenant:nope': engine 'tenant:nope'" in capsys.readouterr().err
    code = cli.main(
        ["archive", ini, "--model", model, "--where", "id < 3", "--hot", "archive:sea"]
    )
    assert code == 2
    assert "not a hot engine of this archive" in capsys.readouterr().err
    code = cli.main(
        ["archive", ini, "--model", model, "--where", "id < 3", "--hot", "tenant:sea"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "from tenant:sea to archive:sea" in out
    assert "done: 2 rows of Order and 4 children moved" in out
    assert ids(root, "sea", "shop.sqlite") == [3, 4]
    assert ids(root, "sea", "archive.sqlite") == [1, 2]
    assert ids(root, "alps", "archive.sqlite") == []
