"""Moving rows to the archive: ``dbrouter archive``'s batches against the
plain statements a developer would write, on the same engines.

* SQLite pair (two files): ours is the two-step move (an upsert copy
  committed on the archive, then the delete); plain is ``ATTACH`` the
  archive and ``INSERT INTO arch.t SELECT ... ; DELETE ...`` per batch, one
  transaction of one connection.
* PostgreSQL pair (two databases of one cluster): ours is the atomic move
  (rows read FOR UPDATE, copied, deleted, two-phase commit with the decision
  log); plain is the hand-written loop with no atomicity: SELECT the batch,
  executemany INSERT on the archive and commit, DELETE on hot and commit.

Each contender moves the same ``--rows`` orders (one line each: 2 rows per
order) in batches of ``--batch``, from the same seeded state; contenders
alternate over ``--rounds``.  Reported: rows/s (orders and lines) of each,
median over rounds, and ours / plain.  Run:
``.venv/bin/python benchmarks/archive_move.py [--rows N] [--no-postgresql]``.
"""

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from pyramid.config import Configurator
from sqlalchemy import create_engine, delete, insert, select, text

import _bench

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "plugins"))
from archive_app import Base, Order, OrderLine  # noqa: E402

from dbrouter_archive import move_keys  # noqa: E402
from pyramid_dbrouter import get_engines, session_scope  # noqa: E402

OLD = datetime(2020, 1, 1)


def seed(urls, rows):
    for name, url in urls.items():
        engine = create_engine(url)
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        if name == "default":
            with engine.begin() as conn:
                conn.execute(
                    insert(Order),
                    [
                        {"id": i, "customer": "c", "total": i, "created_at": OLD}
                        for i in range(1, rows + 1)
                    ],
                )
                conn.execute(
                    insert(OrderLine),
                    [
                        {"id": i * 10, "order_id": i, "sku": "s"}
                        for i in range(1, rows + 1)
                    ],
                )
        engine.dispose()


def app_registry(urls):
    config = Configurator(
        settings={
            "sqlalchemy.url": urls["default"],
            "sqlalchemy.archive.url": urls["archive"],
            "dbrouter.archive.archive": "archive",
            "dbrouter.archive.models": "archive_app:Order",
        }
    )
    config.include("pyramid_dbrouter")
    config.include("dbrouter_archive")
    config.commit()
    return config.registry


def ours(urls, rows, batch):
    registry = app_registry(urls)
    started = time.perf_counter()
    while True:
        with session_scope(registry) as session:
            keys = session.using_bind("default").execute(
                select(Order.id).order_by(Order.id).limit(batch)
            )
            keys = [tuple(k) for k in keys]
            if not keys:
                break
            move_keys(session, Order, keys, only_if=Order.created_at < datetime.now())
    elapsed = time.perf_counter() - started
    for engine in get_engines(registry).values():
        engine.dispose()
    return elapsed


def plain_sqlite(urls, rows, batch):
    engine = create_engine(urls["default"])
    archive_path = urls["archive"].removeprefix("sqlite:///")
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ATTACH DATABASE '{archive_path}' AS arch")
        conn.commit()
        while True:
            ids = conn.execute(
                text("SELECT id FROM orders ORDER BY id LIMIT :n"), {"n": batch}
            ).scalars()
            ids = list(ids)
            if not ids:
                break
            last = ids[-1]
            for sql in (
                "INSERT INTO arch.orders SELECT * FROM orders WHERE id <= :last",
                "INSERT INTO arch.order_lines SELECT * FROM order_lines "
                "WHERE order_id <= :last",
                "DELETE FROM order_lines WHERE order_id <= :last",
                "DELETE FROM orders WHERE id <= :last",
            ):
                conn.execute(text(sql), {"last": last})
            conn.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def plain_loop(urls, rows, batch):
    hot, cold = create_engine(urls["default"]), create_engine(urls["archive"])
    started = time.perf_counter()
    while True:
        with hot.connect() as conn:
            orders = [
                dict(r._mapping)
                for r in conn.execute(
                    select(Order.__table__).order_by(Order.id).limit(batch)
                )
            ]
            if not orders:
                break
            ids = [o["id"] for o in orders]
            lines = [
                dict(r._mapping)
                for r in conn.execute(
                    select(OrderLine.__table__).where(OrderLine.order_id.in_(ids))
                )
            ]
            with cold.begin() as archive:
                archive.execute(insert(Order.__table__), orders)
                archive.execute(insert(OrderLine.__table__), lines)
            conn.execute(delete(OrderLine.__table__).where(OrderLine.order_id.in_(ids)))
            conn.execute(delete(Order.__table__).where(Order.id.in_(ids)))
            conn.commit()
    elapsed = time.perf_counter() - started
    hot.dispose()
    cold.dispose()
    return elapsed


def check_moved(urls, rows):
    for name, expected in (("default", 0), ("archive", rows)):
        engine = create_engine(urls[name])
        with engine.connect() as conn:
            found = conn.execute(text("SELECT count(*) FROM orders")).scalar()
        engine.dispose()
        assert found == expected, (name, found, expected)


def compare(label, urls, contenders, rows, batch, rounds):
    times = {name: [] for name in contenders}
    for round_ in range(rounds):
        order = list(contenders.items())
        if round_ % 2:
            order.reverse()
        for name, fn in order:
            seed(urls, rows)
            times[name].append(fn(urls, rows, batch))
            check_moved(urls, rows)
    rates = {n: 2 * rows / statistics.median(t) for n, t in times.items()}
    ours_rate, plain_rate = rates["ours"], rates["plain"]
    print(
        f"{label}: {rows} orders + {rows} lines, batches of {batch}, median of "
        f"{rounds} rounds: ours {ours_rate:,.0f} rows/s, plain {plain_rate:,.0f} "
        f"rows/s, ours/plain {ours_rate / plain_rate:.2f}",
        flush=True,
    )
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args(argv)
    print(_bench.cpu_model() if hasattr(_bench, "cpu_model") else "", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "default": f"sqlite:///{tmp}/hot.sqlite",
            "archive": f"sqlite:///{tmp}/archive.sqlite",
        }
        compare(
            "SQLite pair (two-step)",
            urls,
            {"ours": ours, "plain": plain_sqlite},
            args.rows,
            args.batch,
            args.rounds,
        )
    if not args.no_postgresql:
        cluster = _bench.start_postgres("bench-archive")
        try:
            urls = {
                "default": cluster.url(cluster.create_database()),
                "archive": cluster.url(cluster.create_database()),
            }
            compare(
                "PostgreSQL pair (two-phase)",
                urls,
                {"ours": ours, "plain": plain_loop},
                args.rows,
                args.batch,
                args.rounds,
            )
        finally:
            _bench.stop_postgres(cluster)
            cluster.cleanup()


if __name__ == "__main__":
    main()
