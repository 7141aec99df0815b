"""Per-statement cost of ``RoutingSession`` on the ``default`` engine.

Compares, side by side, on SQLite in memory (one identical engine per
contender, so that the write-tracking listener a multi-engine factory puts on
its engines is paid by the routing contenders only):

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

Run: ``.venv/bin/python benchmarks/routing_overhead.py [--quick] [--json PATH]``
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import sqlalchemy
from sqlalchemy import String, create_engine, event, func, insert, select
from sqlalchemy.ext.horizontal_shard import ShardedSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from pyramid_dbrouter import RoutingSession, bind_of, get_session_factory
from pyramid_dbrouter.session import _note_write

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


def make_engine():
    engine = create_engine(
        "sqlite://",
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
    )
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Item),
            [{"id": i, "name": f"item {i}", "value": i} for i in range(1, ROWS + 1)],
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


def make_contenders(single):
    plain = make_engine()
    sharded = make_engine()
    r0, r0_other = make_engine(), make_engine()
    r2, r2_other = make_engine(), make_engine()
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
        r1 = make_engine()
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


def calibrate(op, contender, block_ns):
    """N such that one block of the plain session lasts about block_ns."""
    setup, run, teardown = OPERATIONS[op]
    state = setup(contender)
    try:
        run(state, 3)  # warm caches
        n = 1
        while True:
            start = time.perf_counter_ns()
            run(state, n)
            elapsed = time.perf_counter_ns() - start
            if elapsed >= block_ns / 4 or n >= 1 << 20:
                break
            n *= 2
    finally:
        teardown(state)
    return max(1, round(n * block_ns / max(elapsed, 1)))


def measure(op, contenders, rounds, block_ns, log):
    setup, run, teardown = OPERATIONS[op]
    n = calibrate(op, contenders[0], block_ns)
    states = [setup(c) for c in contenders]
    try:
        for state in states:  # warm-up, untimed
            run(state, max(1, n // 2))
        gc.collect()
        gc.freeze()  # the setup's objects are never scanned again
        per_op = [[] for _ in contenders]
        cpu_per_op = [[] for _ in contenders]
        k = len(contenders)
        for r in range(rounds):
            for j in range(k):
                i = (r + j) % k
                cpu_start = time.process_time_ns()
                start = time.perf_counter_ns()
                run(states[i], n)
                per_op[i].append((time.perf_counter_ns() - start) / n)
                cpu_per_op[i].append((time.process_time_ns() - cpu_start) / n)
            log(".")
        gc.unfreeze()
    finally:
        for state in states:
            teardown(state)
    return n, per_op, cpu_per_op


def quantile(values, q):
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(per_op, cpu_per_op):
    base = per_op[0]
    cpu_base = statistics.median(cpu_per_op[0])
    base_median = statistics.median(base)
    rows = []
    for times, cpu in zip(per_op, cpu_per_op, strict=True):
        paired = [t / b for t, b in zip(times, base, strict=True)]
        rows.append(
            {
                "median_ns": statistics.median(times),
                "ratio": statistics.median(times) / base_median,
                "paired_median": statistics.median(paired),
                "paired_p25": quantile(paired, 0.25),
                "paired_p75": quantile(paired, 0.75),
                "min_ns": min(times),
                "min_ratio": min(times) / min(base),
                "cpu_median_ns": statistics.median(cpu),
                "cpu_ratio": statistics.median(cpu) / cpu_base,
            }
        )
    return rows


# -- machine ----------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision():
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


class OtherLoad:
    """CPU time used by other processes while the benchmark ran (Linux only)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ticks = [int(x) for x in fields]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: busy = all but idle, iowait
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.time()

    def cpus(self):
        """Average number of CPUs other processes kept busy, or None."""
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        busy = end[0] - self.start[0]
        own = end[1] - self.start[1]
        return max(0.0, (busy - own) / (end[2] - self.start[2]))


def machine():
    import sqlite3

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "pyramid_dbrouter": metadata.version("pyramid_dbrouter"),
        "git": git_revision(),
    }


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
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers")
    args = parser.parse_args(argv)

    rounds = args.rounds or (10 if args.quick else 35)
    block_ms = args.block_ms or (40.0 if args.quick else 100.0)
    ops = args.only or list(OPERATIONS)

    def log(text):
        print(text, end="", file=sys.stderr, flush=True)

    began = time.perf_counter()
    other_load = OtherLoad()
    contenders = make_contenders(single=not args.no_single)
    check_contenders(contenders)
    info = machine()
    results = {}
    for op in ops:
        log(f"{op}: ")
        n, per_op, cpu_per_op = measure(op, contenders, rounds, block_ms * 1e6, log)
        results[op] = {
            "n": n,
            "per_op": per_op,
            "cpu_per_op": cpu_per_op,
            "summary": summarize(per_op, cpu_per_op),
        }
        log("\n")
    for c in contenders:
        if count_items(c.engine) != ROWS:
            raise SystemExit(f"{c.name}: the table grew; the benchmark leaked rows")
    elapsed = time.perf_counter() - began
    others = other_load.cpus()
    info["CPUs used by other processes during the run"] = (
        "unknown" if others is None else f"{others:.2f}"
    )

    print("# RoutingSession overhead on the `default` engine\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(
        f"- method: {rounds} interleaved rounds per operation, blocks of about "
        f"{block_ms:g} ms (N per block below), median per operation; "
        f"total {elapsed:.0f} s\n"
    )
    print(
        "| operation | N | contender | median µs/op | ratio "
        "| paired ratio [IQR] | CPU-time ratio |"
    )
    print("| --- | ---: | --- | ---: | ---: | --- | ---: |")
    for op in ops:
        result = results[op]
        for c, row in zip(contenders, result["summary"], strict=True):
            print(
                f"| {op} | {result['n']} | {c.name} | {row['median_ns'] / 1000:.2f} "
                f"| {row['ratio']:.3f}x | {row['paired_median']:.3f} "
                f"[{row['paired_p25']:.3f}–{row['paired_p75']:.3f}] "
                f"| {row['cpu_ratio']:.3f}x |"
            )
    print(
        "\nratio: median / plain Session's median.  paired ratio: per round, "
        "contender's block / plain Session's block of the same round; its "
        "interquartile range shows the run-to-run noise.  CPU-time ratio: the "
        "same as ratio, on this process's CPU time (time.process_time_ns), which "
        "leaves out the time other processes took the CPU away."
    )
    if others is not None and others > 0.25:
        print(
            f"\nWARNING: other processes kept {others:.2f} of "
            f"{info['usable_cpus']} CPUs busy during this run: the numbers are "
            "disturbed; prefer the CPU-time ratio, or rerun on an idle machine."
        )

    if args.json:
        raw = {
            "machine": info,
            "rounds": rounds,
            "block_ms": block_ms,
            "elapsed_s": elapsed,
            "contenders": [c.name for c in contenders],
            "operations": {
                op: {
                    "n": results[op]["n"],
                    "per_op_ns": {
                        c.name: times
                        for c, times in zip(
                            contenders, results[op]["per_op"], strict=True
                        )
                    },
                    "cpu_per_op_ns": {
                        c.name: times
                        for c, times in zip(
                            contenders, results[op]["cpu_per_op"], strict=True
                        )
                    },
                    "summary": {
                        c.name: row
                        for c, row in zip(
                            contenders, results[op]["summary"], strict=True
                        )
                    },
                }
                for op in ops
            },
        }
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    main()
