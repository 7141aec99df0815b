"""Two-phase commit latency: pyramid_dbrouter against stock zope.sqlalchemy.

Stock is ``sessionmaker(twophase=True)`` registered with zope.sqlalchemy, on
the same PostgreSQL databases: it prepares every branch (readers too) under
unrelated random xids and keeps no decision log.  Ours prepares only the
writers, writes a durable decision, and commits.

Two operations, each one transaction through a transaction manager:

* ``two writers``: one row to each of two databases (two clusters);
* ``one writer, two readers``: one row to one database, a SELECT on two others.

The contenders are interleaved over many rounds (``_bench.interleave``: the
first one rotates); the report gives the median per-transaction time and the
ratio ours / stock, with the paired ratio's interquartile range.  Run:
``.venv/bin/python benchmarks/twophase.py [--quick] [--json PATH]``.  It starts
its own PostgreSQL clusters (max_prepared_transactions > 0, fsync and
synchronous_commit on, no statement log) from the machine's binaries with the
test suite's harness; ``benchmarks/report.py`` calls :func:`run`.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import transaction
import zope.sqlalchemy
from sqlalchemy import Integer, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import _bench
from pyramid_dbrouter import EngineRegistry, get_session_factory, get_tm_session
from pyramid_dbrouter.twophase import TwoPhasePolicy


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


def start(clusters=None):
    """Two clusters (started here unless given) and the URLs of the
    databases ``default`` and ``c`` (first cluster) and ``b`` (second)."""
    owned = []
    if clusters is None:
        clusters = []
        for name in ("bench-a", "bench-b"):
            cluster = _bench.start_postgres(name)
            owned.append(cluster)
            clusters.append(cluster)
    one, two = clusters
    urls = {}
    for name, cluster in (("default", one), ("b", two), ("c", one)):
        urls[name] = cluster.url(cluster.create_database())
    return owned, urls


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


def _runs(contenders, counter):
    """For each contender, ``run(n)``: n transactions."""

    def make(fn, factory):
        def run(n):
            for _ in range(n):
                fn(factory, next(counter))

        return run

    return [make(fn, factory) for fn, factory in contenders.values()]


OPERATIONS = {
    "two writers": (stock_two_writers, ours_two_writers),
    "one writer, two readers": (stock_one_writer, ours_one_writer),
}


def run(quick=False, clusters=None, rounds=None, per_round=None):
    """Measure; return the raw figures as a JSON-able dict.  *clusters*: two
    started ``PostgresCluster`` to use (else two are started and removed)."""
    rounds = rounds or (5 if quick else 21)
    per_round = per_round or (10 if quick else 20)
    began = time.perf_counter()
    other_load = _bench.OtherLoad()
    owned, urls = start(clusters)
    engines = {}
    results = {}
    try:
        engines = {name: create_engine(url) for name, url in urls.items()}
        for engine in engines.values():
            Base.metadata.create_all(engine)
        stock = stock_factory(engines)
        ours = get_session_factory(
            engines, policy=TwoPhasePolicy(engines_registry(engines))
        )
        counter = itertools.count()
        for label, (stock_fn, ours_fn) in OPERATIONS.items():
            contenders = {"stock": (stock_fn, stock), "ours": (ours_fn, ours)}
            _bench.log(f"  two-phase commit, {label}: ")
            results[label] = _bench.measure(
                list(contenders), _runs(contenders, counter), rounds, 0, n=per_round
            )
            _bench.log("\n")
        check_rows(engines)
    finally:
        for engine in engines.values():
            engine.dispose()
        for cluster in owned:
            _bench.stop_postgres(cluster)
    return {
        "rounds": rounds,
        "per_round": per_round,
        "elapsed_s": time.perf_counter() - began,
        "other_cpus": other_load.cpus(),
        "operations": results,
    }


def check_rows(engines):
    """Both contenders really wrote, and left no prepared transaction."""
    for name in ("default", "b"):
        with engines[name].connect() as conn:
            notes = conn.scalars(select(Entry.note)).all()
            prepared = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_prepared_xacts"
            ).scalar()
        for prefix in ("s", "o"):
            if not any(note.startswith(prefix) for note in notes):
                raise SystemExit(f"engine {name}: no row written by {prefix!r}")
        if prepared:
            raise SystemExit(f"engine {name}: {prepared} prepared transactions left")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    results["machine"] = _bench.machine()
    print(
        "| transaction | stock zope.sqlalchemy twophase (µs) | pyramid_dbrouter (µs) "
        "| ours / stock | paired [IQR] |"
    )
    print("| --- | ---: | ---: | ---: | --- |")
    for label, data in results["operations"].items():
        stock, ours = data["summary"]["stock"], data["summary"]["ours"]
        print(
            f"| {label} | {stock['median_ns'] / 1000:.0f} | "
            f"{ours['median_ns'] / 1000:.0f} | {ours['ratio']:.2f}x | "
            f"{ours['paired_median']:.2f} [{ours['paired_p25']:.2f}–"
            f"{ours['paired_p75']:.2f}] |"
        )
    print(
        f"\nmedian of {results['rounds']} interleaved rounds of "
        f"{results['per_round']} transactions; {results['machine']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def engines_registry(engines):
    registry = EngineRegistry()
    for name, engine in engines.items():
        registry.add(name, engine)
    return registry


if __name__ == "__main__":
    main()
