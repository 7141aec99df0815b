"""Per-statement cost of ``RoutingSession`` on the ``default`` engine.

Compares, side by side, on SQLite in memory or on PostgreSQL over loopback
TCP (one identical engine -- and, on PostgreSQL, one database -- per
contender, so that the write-tracking listener a multi-engine factory puts
on its engines is paid by the routing contenders only):

* a plain SQLAlchemy ``Session`` (the reference, ratio 1.00);
* ``sqlalchemy.ext.horizontal_shard.ShardedSession`` with one shard;
* ``RoutingSession`` from ``get_session_factory({"default": ..., "other": ...})``
  with no routers, and with two routers that abstain on the benchmark's model
  (so the router chain is really consulted on every statement);
* ``RoutingSession`` from ``get_session_factory(engine)``, a single-engine
  application (no write tracking), to tell routing from write tracking.

Operations, each run N times per timed block:

* ``get``: ``session.get(Item, pk)`` after ``expunge_all()`` (one session,
  one transaction: the identity map is empty, the row is always loaded);
* ``get, new session``: ``with factory() as s: s.get(Item, pk)`` (begin,
  connection checkout, get, rollback, close: the cost of a short request);
* ``select``: ``expunge_all()`` then
  ``session.scalars(select(Item).where(Item.id < 10)).all()`` (9 rows);
* ``flush 100``: 100 new ``Item`` added, ``flush()``, then ``rollback()``
  so that the table does not grow.

Method: the contenders are interleaved (A, B, C, ...; the starting contender
rotates every round), each round times one block of N operations per
contender with ``time.perf_counter_ns``; N is calibrated on the plain session
so that a block lasts about ``--block-ms``.  Reported: the median over rounds
of the per-operation time, its ratio to the plain session's median, and the
median and interquartile range of the per-round paired ratio (contender's
block / plain session's block of the same round), which shows the noise.
Each block's CPU time (``time.process_time_ns``) is recorded as well: on a
shared machine it leaves out the time other processes took, and the script
reports how many CPUs other processes kept busy during the run.  Before
timing, every contender is checked to do the same work (same rows, same
inserts, rollback leaves the table as it was) and the routing contenders to
really consult their routers; nothing asserts on a time.

Run: ``.venv/bin/python benchmarks/routing_overhead.py [--quick] [--postgresql]
[--json PATH]``; ``benchmarks/report.py`` calls :func:`run`.
"""

import argparse
import functools
import json
import time
from pathlib import Path

from sqlalchemy import String, create_engine, event, func, insert, select
from sqlalchemy.ext.horizontal_shard import ShardedSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

import _bench
from pyramid_dbrouter import RoutingSession, bind_of, get_session_factory
from pyramid_dbrouter.writes import _note_write

ROWS = 1000  # rows of Item in every engine's table


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    value: Mapped[int]


class AuditLog(Base):
    """A model a router sends to ``other``: proves the routers are consulted."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(200))


# -- routers that abstain on Item ------------------------------------------------


class AuditRouter:
    """Sends AuditLog to ``other``; no opinion on anything else."""

    def db_for_read(self, model, **hints):
        if model is AuditLog:
            return "other"
        return None

    def db_for_write(self, model, **hints):
        if model is AuditLog:
            return "other"
        return None


class ReplicaRouter:
    """Reads from ``other`` only when the request asks for it; else abstains."""

    def db_for_read(self, model, **hints):
        request = hints.get("request")
        if request is not None and getattr(request, "use_replica", False):
            return "other"
        return None

    def db_for_write(self, model, **hints):
        return None


# -- contenders -------------------------------------------------------------------


def make_engine(url=None):
    """An engine whose ``item`` table holds ROWS rows: SQLite in memory, or
    the database *url* (emptied first)."""
    if url is None:
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        engine = create_engine(url)
        Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Item),
            [{"id": i, "name": f"item {i}", "value": i} for i in range(1, ROWS + 1)],
        )
        if engine.dialect.name == "postgresql":
            # explicit ids leave the serial's sequence behind
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('item', 'id'), max(id)) FROM item"
            )
    return engine


def _shard_chooser(mapper, instance, clause=None, **kw):
    return "default"


def _identity_chooser(mapper, primary_key, **kw):
    return ["default"]


def _execute_chooser(orm_context):
    return ["default"]


class Contender:
    def __init__(self, name, factory, engines):
        self.name = name
        self.factory = factory
        self.engines = engines  # {name: Engine}, "default" first

    @property
    def engine(self):
        return self.engines["default"]


def make_contenders(single, new_url=lambda: None):
    """The contenders, each on engines of its own; *new_url* gives each
    engine's database URL (None: SQLite in memory)."""

    def make():
        return make_engine(new_url())

    plain = make()
    sharded = make()
    r0, r0_other = make(), make()
    r2, r2_other = make(), make()
    contenders = [
        Contender("plain Session", sessionmaker(bind=plain), {"default": plain}),
        Contender(
            "ShardedSession, 1 shard",
            sessionmaker(
                class_=ShardedSession,
                shards={"default": sharded},
                shard_chooser=_shard_chooser,
                identity_chooser=_identity_chooser,
                execute_chooser=_execute_chooser,
            ),
            {"default": sharded},
        ),
        Contender(
            "RoutingSession, 2 engines, 0 routers",
            get_session_factory({"default": r0, "other": r0_other}, routers=[]),
            {"default": r0, "other": r0_other},
        ),
        Contender(
            "RoutingSession, 2 engines, 2 routers",
            get_session_factory(
                {"default": r2, "other": r2_other},
                routers=[AuditRouter(), ReplicaRouter()],
            ),
            {"default": r2, "other": r2_other},
        ),
    ]
    if single:
        r1 = make()
        contenders.append(
            Contender(
                "RoutingSession, 1 engine, 0 routers",
                get_session_factory(r1),
                {"default": r1},
            )
        )
    return contenders


# -- operations -------------------------------------------------------------------
#
# Each operation is (setup(contender) -> state, run(state, n), teardown(state)).
# Only run() is timed.


def _open_session(contender):
    return contender.factory()


def _close_session(session):
    session.rollback()
    session.close()


def run_get(session, n):
    get, expunge_all = session.get, session.expunge_all
    for i in range(n):
        expunge_all()
        get(Item, i % ROWS + 1)


def run_get_new_session(factory, n):
    for i in range(n):
        with factory() as session:
            session.get(Item, i % ROWS + 1)


SMALL_SELECT = select(Item).where(Item.id < 10)


def run_select(session, n):
    scalars, expunge_all = session.scalars, session.expunge_all
    for _ in range(n):
        expunge_all()
        scalars(SMALL_SELECT).all()


def run_flush(session, n):
    for _ in range(n):
        session.add_all([Item(name="new", value=j) for j in range(100)])
        session.flush()
        session.rollback()


OPERATIONS = {
    "get": (_open_session, run_get, _close_session),
    "get, new session": (lambda c: c.factory, run_get_new_session, lambda f: None),
    "select": (_open_session, run_select, _close_session),
    "flush 100": (_open_session, run_flush, _close_session),
}


# -- checks (functional, never on time) -------------------------------------------


def count_items(engine):
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Item))


def check_contenders(contenders):
    """Every contender does the same work and the routing is really in play."""
    for c in contenders:
        with c.factory() as s:
            item = s.get(Item, 5)
            item_id = None if item is None else item.id
            row_ids = [r.id for r in s.scalars(SMALL_SELECT).all()]
            s.add_all([Item(name="new", value=j) for j in range(100)])
            s.flush()
            inserted = s.scalar(select(func.count()).select_from(Item))
            s.rollback()
        problems = []
        if item_id != 5:
            problems.append(f"get(Item, 5) returned {item!r}")
        if row_ids != list(range(1, 10)):
            problems.append(f"select returned {row_ids}")
        if inserted != ROWS + 100:
            problems.append(f"flush left {inserted} rows, expected {ROWS + 100}")
        if count_items(c.engine) != ROWS:
            problems.append("rollback did not remove the flushed rows")
        with c.factory() as s:
            if isinstance(s, RoutingSession):
                item = s.get(Item, 5)
                if bind_of(item) != "default":
                    problems.append(f"Item routed to {bind_of(item)!r}")
                multi = len(c.engines) > 1
                tracked = event.contains(c.engine, "do_execute", _note_write)
                if tracked != multi:
                    problems.append(f"write tracking is {tracked}, expected {multi}")
                if s.routers:
                    log = AuditLog(message="routed")
                    s.add(log)
                    s.flush()
                    if bind_of(log) != "other":
                        problems.append(
                            f"routers not consulted: AuditLog in {bind_of(log)!r}"
                        )
                    s.rollback()
        if problems:
            raise SystemExit(f"{c.name}: " + "; ".join(problems))


# -- timing -----------------------------------------------------------------------


def measure(op, contenders, rounds, block_ms):
    setup, run_op, teardown = OPERATIONS[op]
    states = [setup(c) for c in contenders]
    try:
        runs = [functools.partial(run_op, state) for state in states]
        return _bench.measure([c.name for c in contenders], runs, rounds, block_ms)
    finally:
        for state in states:
            teardown(state)


def run(
    quick=False,
    postgres=None,
    ops=None,
    single=True,
    rounds=None,
    block_ms=None,
):
    """Measure; return the raw figures as a JSON-able dict.

    *postgres* is a started ``PostgresCluster`` (tests/_servers.py): every
    engine gets a database of its own there; None is SQLite in memory.
    """
    rounds = rounds or (8 if quick else 30)
    block_ms = block_ms or (30.0 if quick else 100.0)
    ops = ops or list(OPERATIONS)
    new_url = lambda: None  # noqa: E731
    if postgres is not None:

        def new_url():
            return postgres.url(postgres.create_database())

    began = time.perf_counter()
    other_load = _bench.OtherLoad()
    contenders = make_contenders(single, new_url)
    try:
        check_contenders(contenders)
        results = {}
        for op in ops:
            _bench.log(
                f"  routing overhead ({'PostgreSQL' if postgres else 'SQLite'}) {op}: "
            )
            results[op] = measure(op, contenders, rounds, block_ms)
            _bench.log("\n")
        for c in contenders:
            if count_items(c.engine) != ROWS:
                raise SystemExit(f"{c.name}: the table grew; the benchmark leaked rows")
    finally:
        for c in contenders:
            for engine in c.engines.values():
                engine.dispose()
    others = other_load.cpus()
    return {
        "backend": "postgresql" if postgres is not None else "sqlite",
        "rounds": rounds,
        "block_ms": block_ms,
        "elapsed_s": time.perf_counter() - began,
        "other_cpus": others,
        "contenders": [c.name for c in contenders],
        "operations": results,
    }


def format_table(result):
    lines = [
        "| operation | N | contender | median µs/op | ratio "
        "| paired ratio [IQR] | CPU-time ratio |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for op, data in result["operations"].items():
        for name in data["contenders"]:
            row = data["summary"][name]
            lines.append(
                f"| {op} | {data['n']} | {name} | {row['median_ns'] / 1000:.2f} "
                f"| {row['ratio']:.3f}x | {row['paired_median']:.3f} "
                f"[{row['paired_p25']:.3f}–{row['paired_p75']:.3f}] "
                f"| {row['cpu_ratio']:.3f}x |"
            )
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter rounds (~15 s)"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per operation")
    parser.add_argument("--block-ms", type=float, help="target duration of a block")
    parser.add_argument(
        "--only", action="append", choices=list(OPERATIONS), help="operation(s) to run"
    )
    parser.add_argument(
        "--no-single",
        action="store_true",
        help="leave out the single-engine RoutingSession",
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="on a PostgreSQL cluster started for the run (tests/_servers.py)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers")
    args = parser.parse_args(argv)

    cluster = _bench.start_postgres("bench-routing") if args.postgresql else None
    try:
        info = _bench.machine()
        if cluster is not None:
            info["postgresql"] = _bench.postgres_version(cluster)
        result = run(
            quick=args.quick,
            postgres=cluster,
            ops=args.only,
            single=not args.no_single,
            rounds=args.rounds,
            block_ms=args.block_ms,
        )
    finally:
        if cluster is not None:
            _bench.stop_postgres(cluster)
    others = result["other_cpus"]
    info["CPUs used by other processes during the run"] = (
        "unknown" if others is None else f"{others:.2f}"
    )
    result["machine"] = info

    print(f"# RoutingSession overhead on the `default` engine ({result['backend']})\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(
        f"- method: {result['rounds']} interleaved rounds per operation, blocks of "
        f"about {result['block_ms']:g} ms (N per block below), median per "
        f"operation; total {result['elapsed_s']:.0f} s\n"
    )
    print(format_table(result))
    print(
        "\nratio: median / plain Session's median.  paired ratio: per round, "
        "contender's block / plain Session's block of the same round; its "
        "interquartile range shows the run-to-run noise.  CPU-time ratio: the "
        "same as ratio, on this process's CPU time (time.process_time_ns), which "
        "leaves out the time other processes took the CPU away (and, on "
        "PostgreSQL, the server's time)."
    )
    if others is not None and others > 0.25:
        print(
            f"\nWARNING: other processes kept {others:.2f} of "
            f"{info['usable_cpus']} CPUs busy during this run: the numbers are "
            "disturbed; prefer the CPU-time ratio, or rerun on an idle machine."
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
