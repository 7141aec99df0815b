"""Rows of the archive tests, written and read straight from the databases."""

from datetime import datetime, timedelta

from archive_app import Order, OrderLine
from sqlalchemy import create_engine, insert, select, text

OLD = datetime(2020, 1, 1)
NEW = datetime.now() - timedelta(days=1)


def seed(url, ids, created_at=OLD, customer="c", lines=2):
    """Orders *ids* with *lines* lines each, written straight to *url*."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(Order),
            [
                {"id": i, "customer": customer, "total": i, "created_at": created_at}
                for i in ids
            ],
        )
        rows = [
            {"id": i * 10 + n, "order_id": i, "sku": f"s{n}"}
            for i in ids
            for n in range(lines)
        ]
        if rows:
            conn.execute(insert(OrderLine), rows)
    engine.dispose()


def ids_in(url, table="orders"):
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text(f"SELECT id FROM {table} ORDER BY id")).scalars()
        found = list(found)
    engine.dispose()
    return found


def customers(url):
    engine = create_engine(url)
    with engine.connect() as conn:
        found = dict(conn.execute(select(Order.id, Order.customer)).all())
    engine.dispose()
    return found
