"""Two-phase commit latency: pyramid_dbrouter against stock zope.sqlalchemy.

Stock is ``sessionmaker(twophase=True)`` registered with zope.sqlalchemy, on
the same PostgreSQL databases: it prepares every branch (readers too) under
unrelated random xids and keeps no decision log.  Ours prepares only the
writers, writes a durable decision, and commits.

Two operations, each one transaction through a transaction manager:

* ``two writers``: one row to each of two databases (two clusters);
* ``one writer, two readers``: one row to one database, a SELECT on two others.

The contenders alternate (A, B, A, B, ...) over many rounds; the report gives
the median per-transaction time and the ratio ours / stock.  Run:
``.venv/bin/python benchmarks/twophase.py [--quick] [--json PATH]``.  It starts
its own PostgreSQL clusters (max_prepared_transactions > 0) from the
machine's binaries, as the test suite does.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy
import transaction
import zope.sqlalchemy
from sqlalchemy import Integer, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _servers  # noqa: E402 - the test suite's cluster harness
from pyramid_dbrouter import get_session_factory, get_tm_session  # noqa: E402
from pyramid_dbrouter.twophase import TwoPhasePolicy  # noqa: E402


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note: Mapped[str] = mapped_column(String(50))


# stock zope.sqlalchemy binds by class: one class per database, same table
class EntryB(Base):
    __table__ = Entry.__table__
    __mapper_args__ = {"primary_key": [Entry.__table__.c.id]}


class EntryC(Base):
    __table__ = Entry.__table__
    __mapper_args__ = {"primary_key": [Entry.__table__.c.id]}


def start():
    # durable, as in production: the test harness turns fsync off for speed
    durable = {"fsync": True, "synchronous_commit": True, "full_page_writes": True}
    one = _servers.PostgresCluster("bench-a", settings=durable)
    two = _servers.PostgresCluster("bench-b", settings=durable)
    one.start()
    two.start()
    urls = {}
    for name, cluster in (("default", one), ("b", two), ("c", one)):
        db = f"bench_{name}"
        cluster.create_database(db)
        urls[name] = cluster.url(db)
    return (one, two), urls


def stock_factory(engines):
    return sessionmaker(
        binds={Entry: engines["default"], EntryB: engines["b"], EntryC: engines["c"]},
        twophase=True,
    )


def stock_two_writers(factory, i):
    manager = transaction.TransactionManager(explicit=True)
    with manager:
        session = factory()
        zope.sqlalchemy.register(session, transaction_manager=manager)
        session.add(Entry(note=f"s{i}"))
        session.add(EntryB(note=f"s{i}"))


def stock_one_writer(factory, i):
    manager = transaction.TransactionManager(explicit=True)
    with manager:
        session = factory()
        zope.sqlalchemy.register(session, transaction_manager=manager)
        session.add(Entry(note=f"s{i}"))
        session.scalar(select(func.count()).select_from(EntryB))
        session.scalar(select(func.count()).select_from(EntryC))


def ours_two_writers(factory, i):
    manager = transaction.TransactionManager(explicit=True)
    with manager:
        session = get_tm_session(factory, manager)
        session.add(Entry(note=f"o{i}"))
        session.using_bind("b").add(Entry(note=f"o{i}"))


def ours_one_writer(factory, i):
    manager = transaction.TransactionManager(explicit=True)
    with manager:
        session = get_tm_session(factory, manager)
        session.add(Entry(note=f"o{i}"))
        session.using_bind("b").scalar(select(func.count(Entry.id)))
        session.using_bind("c").scalar(select(func.count(Entry.id)))


def measure(contenders, rounds, per_round):
    samples = {name: [] for name in contenders}
    counter = 0
    for _ in range(rounds):
        for name, (fn, factory) in contenders.items():
            begin = time.perf_counter_ns()
            for _ in range(per_round):
                counter += 1
                fn(factory, counter)
            samples[name].append((time.perf_counter_ns() - begin) / per_round / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rounds, per_round = (5, 10) if args.quick else (21, 20)
    clusters, urls = start()
    try:
        engines = {name: create_engine(url) for name, url in urls.items()}
        for engine in engines.values():
            Base.metadata.create_all(engine)
        stock = stock_factory(engines)
        ours = get_session_factory(
            engines, policy=TwoPhasePolicy(engines_registry(engines))
        )
        warm = {"stock": (stock_two_writers, stock), "ours": (ours_two_writers, ours)}
        measure(warm, 2, 5)
        two = measure(warm, rounds, per_round)
        one = measure(
            {"stock": (stock_one_writer, stock), "ours": (ours_one_writer, ours)},
            rounds,
            per_round,
        )
        for engine in engines.values():
            engine.dispose()
    finally:
        for cluster in clusters:
            cluster.cleanup()
    results = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
        },
        "two writers": two,
        "one writer, two readers": one,
        "rounds": rounds,
        "per_round": per_round,
    }
    print(
        "| transaction | stock zope.sqlalchemy twophase (µs) | pyramid_dbrouter (µs) "
        "| ours / stock |"
    )
    print("| --- | ---: | ---: | ---: |")
    for label in ("two writers", "one writer, two readers"):
        row = results[label]
        print(
            f"| {label} | {row['stock']:.0f} | {row['ours']:.0f} | "
            f"{row['ours'] / row['stock']:.2f}x |"
        )
    print(
        f"\nmedian of {rounds} interleaved rounds of {per_round} transactions; "
        f"{results['machine']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def engines_registry(engines):
    from pyramid_dbrouter import EngineRegistry

    registry = EngineRegistry()
    for name, engine in engines.items():
        registry.add(name, engine)
    return registry


if __name__ == "__main__":
    main()
