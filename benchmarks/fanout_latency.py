"""Fan-out over 8 PostgreSQL databases with real latency, side by side.

The same ``select(Item).order_by(Item.value, Item.id).limit(10)``, read by:

* **one database alone** (the anchor): a plain ``Session`` on one of the
  eight databases (1,000 rows, like each of them) -- the latency a fan-out
  would ideally have;
* **by hand, one after another**: a plain ``Session`` running the statement
  on each database in turn, then ``sorted()`` and the LIMIT in Python;
* **ShardedSession**: SQLAlchemy's ``horizontal_shard``, its
  ``execute_chooser`` naming the eight shards (it runs them one after another
  and concatenates: the rows are then sorted and cut in Python, as by hand);
* **pyramid_dbrouter fan-out**: a ``RoutingSession`` whose router answers
  the eight names (the shared pool of ``dbrouter.fanout_workers`` = 8 threads;
  merged by a k-way merge with the LIMIT pushed down);
* **floor: raw driver, 8 threads**: no SQLAlchemy at all -- the compiled SQL
  sent on eight psycopg connections by eight threads, the rows fetched as
  tuples and nothing merged: what Python threads over this machine and this
  proxy cost by themselves, the least any threaded fan-out can take.

Each contender has engines of its own (listeners one puts on its engines
are paid by it alone) and keeps one transaction open: each operation is one
query and an empty identity map.  All four are checked to return the same
ten rows before timing.

Latency is injected by the benchmark itself: every connection goes through
a delaying TCP proxy (a child process on 127.0.0.1 that holds each chunk for
``delay/2`` in each direction, so that a query's round trip costs ``delay``;
it exits with this process, or after an hour).  Slow queries are simulated
with ``WHERE (SELECT pg_sleep(s)) IS NOT NULL``, an InitPlan PostgreSQL
evaluates once per query.  Cases: no latency; 20 ms per round trip;
``pg_sleep(0.02)`` without added latency.

``.venv/bin/python benchmarks/fanout_latency.py [--quick] [--json PATH]``.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.horizontal_shard import ShardedSession
from sqlalchemy.orm import sessionmaker

import _bench
from fanout_read import LIMIT, Item, fill, shard_names, sort_key
from pyramid_dbrouter import get_session_factory
from pyramid_dbrouter.fanout import configure_fanout

SHARDS = 8
CONTENDERS = (
    "one database alone",
    "by hand, one after another",
    "ShardedSession",
    "pyramid_dbrouter fan-out",
    "floor: raw driver, 8 threads",
)
CASES = {
    # name: (round-trip delay in seconds, pg_sleep seconds)
    "no added latency": (0.0, 0.0),
    "20 ms per round trip": (0.02, 0.0),
    "pg_sleep(0.02) per query": (0.0, 0.02),
}
PROXY_LIFETIME = 3600  # seconds: the proxy never outlives a forgotten run


# -- the delaying proxy ------------------------------------------------------------


async def _pipe(reader, writer, delay):
    """Copy *reader* to *writer*, each chunk held *delay* seconds, in order."""
    queue = asyncio.Queue()

    async def send():
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except ConnectionError:
        pass


def _serve(listener, upstream_port, delay, parent):
    # forked from the benchmark: its handlers would stop the clusters when the
    # proxy is terminated (tests/_servers.py cleans up on SIGTERM)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)

    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", upstream_port
            )
        except OSError:
            writer.close()
            return
        half = delay / 2
        await asyncio.gather(
            _pipe(reader, up_writer, half), _pipe(up_reader, writer, half)
        )

    async def main():
        server = await asyncio.start_server(handle, sock=listener)
        deadline = time.monotonic() + PROXY_LIFETIME
        async with server:
            # bounded: stops when the benchmark has gone, or after an hour
            while os.getppid() == parent and time.monotonic() < deadline:
                await asyncio.sleep(0.5)

    asyncio.run(main())


class DelayProxy:
    """A TCP proxy on 127.0.0.1 adding *delay* seconds to every round trip."""

    def __init__(self, upstream_port, delay):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve,
            args=(listener, upstream_port, delay, os.getpid()),
            daemon=True,
        )
        self.process.start()
        listener.close()

    def close(self):
        self.process.terminate()
        self.process.join(5)


# -- the contenders -----------------------------------------------------------------


class Contenders:
    def __init__(self, cluster, databases, port, sleep):
        def engines():
            made = {}
            for name, database in zip(shard_names(SHARDS), databases, strict=True):
                url = cluster.url(database).replace(f":{cluster.port}/", f":{port}/")
                made[name] = create_engine(url, pool_size=2)
            return made

        self.statement = select(Item).order_by(Item.value, Item.id).limit(LIMIT)
        if sleep:
            # a scalar subquery: an InitPlan, evaluated once per query
            slow = select(func.pg_sleep(sleep)).scalar_subquery()
            self.statement = self.statement.where(slow.isnot(None))
        self.owned = []
        one = engines()
        self.one_engine = one["default"]
        self.one = sessionmaker(bind=self.one_engine)()
        self.hand_engines = list(engines().values())
        self.hand = sessionmaker()()
        sharded = engines()
        names = list(sharded)
        self.sharded = ShardedSession(
            shards=sharded,
            shard_chooser=lambda mapper, instance, **kw: names[0],
            identity_chooser=lambda *a, **kw: names,
            execute_chooser=lambda context: names,
        )
        routed = engines()
        factory = get_session_factory(routed, [Router(names)])
        configure_fanout(factory.kw["engines"], workers=SHARDS)
        self.fanout = factory()
        floor = engines()
        self.floor_connections = [e.raw_connection() for e in floor.values()]
        self.floor_sql = str(
            self.statement.compile(
                dialect=self.one_engine.dialect,
                compile_kwargs={"literal_binds": True},
            )
        )
        self.floor_pool = ThreadPoolExecutor(SHARDS)
        self.owned = [*one.values(), *self.hand_engines, *sharded.values()]
        self.owned += [*routed.values(), *floor.values()]

    def run_one(self, n):
        for _ in range(n):
            self.one.expunge_all()
            self.one.scalars(self.statement).all()

    def run_hand(self, n):
        for _ in range(n):
            self.hand.expunge_all()
            rows = []
            for engine in self.hand_engines:
                rows.extend(
                    self.hand.scalars(
                        self.statement, bind_arguments={"bind": engine}
                    ).all()
                )
            rows.sort(key=sort_key)
            del rows[LIMIT:]

    def run_sharded(self, n):
        for _ in range(n):
            self.sharded.expunge_all()
            rows = self.sharded.scalars(self.statement).all()
            rows.sort(key=sort_key)
            del rows[LIMIT:]

    def run_fanout(self, n):
        for _ in range(n):
            self.fanout.expunge_all()
            self.fanout.scalars(self.statement).all()

    def _floor_one(self, connection):
        cursor = connection.cursor()
        cursor.execute(self.floor_sql)
        rows = cursor.fetchall()
        cursor.close()
        return rows

    def run_floor(self, n):
        for _ in range(n):
            futures = [
                self.floor_pool.submit(self._floor_one, c)
                for c in self.floor_connections
            ]
            wait(futures)

    def check(self):
        self.hand.expunge_all()
        rows = []
        for engine in self.hand_engines:
            rows.extend(
                self.hand.scalars(self.statement, bind_arguments={"bind": engine})
            )
        expected = sorted(sort_key(r) for r in rows)[:LIMIT]
        got = [sort_key(r) for r in self.fanout.scalars(self.statement)]
        sharded = sorted(sort_key(r) for r in self.sharded.scalars(self.statement))
        if got != expected or sharded[:LIMIT] != expected:
            raise SystemExit(f"fan-out {got}, sharded {sharded}, expected {expected}")

    def runs(self):
        return [
            self.run_one,
            self.run_hand,
            self.run_sharded,
            self.run_fanout,
            self.run_floor,
        ]

    def close(self):
        for session in (self.one, self.hand, self.sharded, self.fanout):
            session.rollback()
            session.close()
        self.floor_pool.shutdown()
        for connection in self.floor_connections:
            connection.rollback()
            connection.close()
        for engine in self.owned:
            engine.dispose()


class Router:
    def __init__(self, names):
        self.names = list(names)

    def db_for_read(self, model, **hints):
        return self.names if model is Item else None


def run(quick=False, postgres=None, rounds=None, block_ms=None):
    """The three cases, each with the four contenders interleaved."""
    rounds = rounds or (5 if quick else 15)
    block_ms = block_ms or (60.0 if quick else 200.0)
    began = time.perf_counter()
    other_load = _bench.OtherLoad()
    databases = []
    for shard in range(SHARDS):
        database = postgres.create_database()
        engine = create_engine(postgres.url(database))
        fill(engine, shard)
        engine.dispose()
        databases.append(database)
    cases = {}
    for case, (delay, sleep) in CASES.items():
        _bench.log(f"  fan-out over {SHARDS} PostgreSQL databases, {case}: ")
        proxy = DelayProxy(postgres.port, delay) if delay else None
        port = proxy.port if proxy else postgres.port
        contenders = Contenders(postgres, databases, port, sleep)
        try:
            contenders.check()
            cases[case] = _bench.measure(
                CONTENDERS, contenders.runs(), rounds, block_ms
            )
        finally:
            contenders.close()
            if proxy is not None:
                proxy.close()
        _bench.log("\n")
    return {
        "shards": SHARDS,
        "rows_per_shard": 1000,
        "rounds": rounds,
        "block_ms": block_ms,
        "elapsed_s": time.perf_counter() - began,
        "other_cpus": other_load.cpus(),
        "cases": cases,
    }


def table(result):
    lines = [
        "| case | contender | median ms/query | ratio to one database "
        "| paired [IQR] | CPU-time ratio |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    for case, data in result["cases"].items():
        for name, row in data["summary"].items():
            lines.append(
                f"| {case} | {name} | {row['median_ns'] / 1e6:.2f} "
                f"| {row['ratio']:.3f}x | {row['paired_median']:.3f} "
                f"[{row['paired_p25']:.3f}–{row['paired_p75']:.3f}] "
                f"| {row['cpu_ratio']:.3f}x |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    cluster = _bench.start_postgres("bench-fanout-latency")
    try:
        result = run(quick=args.quick, postgres=cluster)
    finally:
        _bench.stop_postgres(cluster)
    print(table(result))
    print(f"\nother processes kept {result['other_cpus'] or 0:.2f} CPUs busy")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
