"""Fan-out reads: one SELECT ... ORDER BY ... LIMIT over N engines.

* **by hand, one after another** (the anchor): the obvious alternative -- a
  plain SQLAlchemy ``Session``, the same statement run on each engine in
  turn (``bind_arguments={"bind": engine}``), the rows merged in Python
  (``sorted`` on the ORDER BY key, then the LIMIT);
* **fan-out, parallel**: a ``RoutingSession`` whose router answers the list
  of the N engine names for the model, so that ``session.scalars(stmt)``
  runs on every engine -- SQLite files in the caller's thread (nothing to
  overlap), servers at once in the application's pool -- and merges the rows
  exactly.

Each engine holds ``ROWS`` rows with ids of its own; the statement is
``select(Item).order_by(Item.value, Item.id).limit(10)`` (an index on
``value``), and both contenders start each operation with an empty identity
map (``expunge_all()``) inside one open transaction.  Before timing, both
are checked to return the same ten rows, which are those a single database
holding every row returns.

On SQLite files (in a temporary directory) and, when a cluster is given, on
PostgreSQL databases (one per engine, over loopback TCP).  Run:
``.venv/bin/python benchmarks/fanout_read.py [--quick] [--postgresql]
[--shards N] [--json PATH]``; ``benchmarks/report.py`` calls :func:`run`.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from sqlalchemy import Index, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import _bench
from pyramid_dbrouter import get_session_factory
from pyramid_dbrouter.settings import DEFAULT

ROWS = 1000  # rows per engine
LIMIT = 10


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "fanout_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    value: Mapped[int]


Index("fanout_item_value", Item.value)

STATEMENT = select(Item).order_by(Item.value, Item.id).limit(LIMIT)


def sort_key(item):
    return (item.value, item.id)


def shard_names(n):
    return [DEFAULT, *(f"s{i}" for i in range(1, n))]


def fill(engine, shard):
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    first = shard * ROWS + 1
    with engine.begin() as conn:
        conn.execute(
            Item.__table__.insert(),
            [
                {"id": i, "name": f"item {i}", "value": (i * 7919) % 100003}
                for i in range(first, first + ROWS)
            ],
        )


class FanOutRouter:
    """Every read of Item goes to all the shards."""

    def __init__(self, names):
        self.names = list(names)

    def db_for_read(self, model, **hints):
        return self.names if model is Item else None


class Shards:
    """N engines, filled; the two contenders' sessions over them."""

    def __init__(self, n, new_url):
        self.names = shard_names(n)
        self.engines = {}
        for shard, name in enumerate(self.names):
            engine = create_engine(new_url())
            fill(engine, shard)
            self.engines[name] = engine
        routing = get_session_factory(self.engines, [FanOutRouter(self.names)])
        self.fanout_session = routing()
        self.plain_session = sessionmaker()()

    def fanout(self, n):
        session = self.fanout_session
        for _ in range(n):
            session.expunge_all()
            session.scalars(STATEMENT).all()

    def by_hand(self, n):
        session = self.plain_session
        engines = list(self.engines.values())
        for _ in range(n):
            session.expunge_all()
            rows = []
            for engine in engines:
                rows.extend(
                    session.scalars(STATEMENT, bind_arguments={"bind": engine}).all()
                )
            rows.sort(key=sort_key)
            del rows[LIMIT:]

    def check(self):
        expected = sorted(
            (item.value, item.id)
            for engine in self.engines.values()
            for item in self.plain_session.scalars(
                select(Item), bind_arguments={"bind": engine}
            )
        )[:LIMIT]
        self.plain_session.expunge_all()
        got = [sort_key(i) for i in self.fanout_session.scalars(STATEMENT).all()]
        if got != expected:
            raise SystemExit(f"fan-out returned {got}, expected {expected}")
        rows = []
        for engine in self.engines.values():
            rows.extend(
                self.plain_session.scalars(
                    STATEMENT, bind_arguments={"bind": engine}
                ).all()
            )
        by_hand = sorted(sort_key(i) for i in rows)[:LIMIT]
        if by_hand != expected:
            raise SystemExit(f"by hand returned {by_hand}, expected {expected}")

    def close(self):
        for session in (self.fanout_session, self.plain_session):
            session.rollback()
            session.close()
        for engine in self.engines.values():
            engine.dispose()


CONTENDERS = ("by hand, one after another", "fan-out, parallel")


def measure(n, new_url, rounds, block_ms):
    shards = Shards(n, new_url)
    try:
        shards.check()
        return _bench.measure(
            CONTENDERS, [shards.by_hand, shards.fanout], rounds, block_ms
        )
    finally:
        shards.close()


def url_maker(postgres, directory):
    counter = iter(range(1 << 30))
    if postgres is not None:
        return lambda: postgres.url(postgres.create_database())
    return lambda: f"sqlite:///{directory}/shard{next(counter)}.sqlite"


def run(quick=False, postgres=None, shards=4, rounds=None, block_ms=None):
    """Fan-out over *shards* engines against the sequential loop by hand."""
    rounds = rounds or (6 if quick else 25)
    block_ms = block_ms or (40.0 if quick else 100.0)
    began = time.perf_counter()
    other_load = _bench.OtherLoad()
    backend = "PostgreSQL" if postgres is not None else "SQLite files"
    with tempfile.TemporaryDirectory(prefix="dbrouter-bench-fanout-") as tmp:
        _bench.log(f"  fan-out over {shards} engines ({backend}): ")
        result = measure(shards, url_maker(postgres, tmp), rounds, block_ms)
        _bench.log("\n")
    return {
        "backend": "postgresql" if postgres is not None else "sqlite",
        "shards": shards,
        "rounds": rounds,
        "block_ms": block_ms,
        "elapsed_s": time.perf_counter() - began,
        "other_cpus": other_load.cpus(),
        "result": result,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    cluster = _bench.start_postgres("bench-fanout") if args.postgresql else None
    try:
        result = run(quick=args.quick, postgres=cluster, shards=args.shards)
    finally:
        if cluster is not None:
            _bench.stop_postgres(cluster)
    print("| contender | median µs/query | ratio | paired [IQR] | CPU-time ratio |")
    print("| --- | ---: | ---: | --- | ---: |")
    for name, row in result["result"]["summary"].items():
        print(
            f"| {name} | {row['median_ns'] / 1000:.0f} | {row['ratio']:.3f}x "
            f"| {row['paired_median']:.3f} [{row['paired_p25']:.3f}–"
            f"{row['paired_p75']:.3f}] | {row['cpu_ratio']:.3f}x |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
