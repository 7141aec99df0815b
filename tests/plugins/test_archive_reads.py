"""Hot and archive read as one (two SQLite files): new rows to hot, get()
in hot then archive, queries merged, a row in both returned once (hot's),
writes of archived objects back to the archive or refused."""

import pytest
from archive_app import Note, Order, OrderLine
from archive_data import NEW, OLD, customers, ids_in, seed
from sqlalchemy import select
from webtest import TestApp

from dbrouter_archive import ArchiveReadOnlyError, get_archive
from pyramid_dbrouter import FanoutError, bind_of, session_scope

pytest_plugins = ("archive_support",)


@pytest.fixture
def shop(archive_app, sqlite_pair):
    """Orders 1-5 in hot, 6-10 in the archive, and 3 in both (the archive's
    copy older: an interrupted move)."""
    app = archive_app(sqlite_pair)
    seed(sqlite_pair["default"], range(1, 6), NEW, customer="hot")
    seed(sqlite_pair["archive"], [3, *range(6, 11)], OLD, customer="archived")
    return app


def test_queries_read_both_merged_each_row_once(shop):
    assert TestApp(shop).get("/orders").json == list(range(1, 11))


def test_ordered_and_limited_as_one_database(shop):
    assert TestApp(shop).get("/orders", {"limit": 4}).json == [1, 2, 3, 4]
    with session_scope(shop.registry) as session:
        newest = session.scalars(select(Order).order_by(Order.id.desc()).limit(3))
        assert [o.id for o in newest] == [10, 9, 8]
        page = select(Order).order_by(Order.id).limit(3).offset(4)
        assert [o.id for o in session.scalars(page)] == [5, 6, 7]


def test_a_row_in_both_is_returned_once_hot_copy(shop):
    with session_scope(shop.registry) as session:
        orders = session.scalars(select(Order).where(Order.id == 3)).all()
        assert [(o.customer, bind_of(o)) for o in orders] == [("hot", "default")]
        rows = session.execute(select(Order, OrderLine).join(Order.lines)).all()
        assert sorted((o.id, line.id) for o, line in rows) == sorted(
            (i, i * 10 + n) for i in range(1, 11) for n in range(2)
        )


def test_get_looks_in_hot_then_archive(shop):
    app = TestApp(shop)
    assert app.get("/orders/3").json == {"found": True, "customer": "hot", "lines": 2}
    assert app.get("/orders/8").json == {
        "found": True,
        "customer": "archived",
        "lines": 2,
    }
    assert app.get("/orders/99").json == {"found": False}
    with session_scope(shop.registry) as session:
        assert bind_of(session.get(Order, 8)) == "archive"
        assert bind_of(session.get(Order, 8).lines[0]) == "archive"


def test_new_rows_go_to_hot(shop, sqlite_pair):
    TestApp(shop).post("/orders", {"id": 42, "created_at": NEW.isoformat()})
    assert 42 in ids_in(sqlite_pair["default"])
    assert 42 not in ids_in(sqlite_pair["archive"])
    assert {420, 421} <= set(ids_in(sqlite_pair["default"], "order_lines"))


def test_models_not_archived_are_left_to_the_chain(shop, sqlite_pair):
    with session_scope(shop.registry) as session:
        session.add(Note(text="hot only"))
    assert ids_in(sqlite_pair["default"], "notes") == [1]
    from sqlalchemy import create_engine, inspect

    engine = create_engine(sqlite_pair["archive"])
    assert "notes" not in inspect(engine).get_table_names()
    engine.dispose()


def test_an_archived_object_is_written_back_to_the_archive(shop, sqlite_pair):
    TestApp(shop).post("/orders/8", {"customer": "renamed"})
    assert customers(sqlite_pair["archive"])[8] == "renamed"
    assert 8 not in customers(sqlite_pair["default"])


def test_a_new_child_of_an_archived_order_follows_it(shop, sqlite_pair):
    with session_scope(shop.registry) as session:
        order = session.get(Order, 8)
        order.lines.append(OrderLine(id=999, sku="late"))
    assert 999 in ids_in(sqlite_pair["archive"], "order_lines")


def test_archive_writes_refuse(archive_app, sqlite_pair):
    app = archive_app(sqlite_pair, **{"dbrouter.archive.archive_writes": "refuse"})
    seed(sqlite_pair["archive"], [8], OLD, customer="archived")
    with pytest.raises(ArchiveReadOnlyError, match="read-only"):
        TestApp(app).post("/orders/8", {"customer": "renamed"})
    with pytest.raises(ArchiveReadOnlyError, match="new OrderLine"):
        with session_scope(app.registry) as session:
            order = session.get(Order, 8)
            order.lines.append(OrderLine(id=999, sku="late"))
    with pytest.raises(ArchiveReadOnlyError, match="deleted"):
        with session_scope(app.registry) as session:
            session.delete(session.get(Order, 8))
    assert customers(sqlite_pair["archive"]) == {8: "archived"}
    assert get_archive(app.registry).archive_writes == "refuse"


def test_fanout_unique_is_checked(shop):
    with session_scope(shop.registry) as session:
        with pytest.raises(FanoutError, match="fanout_unique='last'"):
            session.execute(select(Order).execution_options(fanout_unique="last"))
        # column rows have no identity: both copies of order 3 are read
        ids = session.scalars(select(Order.id).order_by(Order.id)).all()
        assert ids.count(3) == 2
