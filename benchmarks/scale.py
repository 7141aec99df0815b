"""How the per-statement cost grows: routers, engines, shards, tenants.

Four curves, each measured with interleaved rounds against its anchor:

* **routers** -- RoutingSession (2 engines) with 0, 1, 10, 50 routers that
  abstain (``db_for_read``/``db_for_write`` return None), against a plain
  ``Session``: ``get`` with an empty identity map, and the small ``select``
  of ``routing_overhead.py`` (SQLite in memory).
* **engines** -- RoutingSession with 2, 10, 100 static engines configured
  (the statements all on ``default``), against a plain ``Session``.
* **shards** -- a SELECT ... ORDER BY ... LIMIT fanned out over 2, 8, 32
  SQLite files, against the same statement run on each file in turn by hand
  (``fanout_read.py``).
* **tenants** -- ``with factory() as s: s.using_bind("tenant:KEY").get(...)``
  (a short request: begin, checkout, get, rollback) round-robin over 10,
  100, 1,000, 10,000 distinct keys, each a SQLite file made by an engine
  factory (``EngineRegistry.add_factory``), the LRU of dynamic engines
  bounded by ``max_dynamic_engines`` = 32 and = 10,000; against a plain
  ``Session`` doing the same on one static SQLite file.  With 32 engines
  open and more keys than that, a round-robin misses every time: each
  request creates an engine (sharing the dialect and compiled cache of the
  factory's other SQLite engines), opens the file, and retires the least
  recently used engine (closed by a worker, eight at a time).

Run: ``.venv/bin/python benchmarks/scale.py [--quick] [--only CURVE]
[--json PATH]``; ``benchmarks/report.py`` calls :func:`run` and draws the
plots.
"""

import argparse
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

import _bench
import fanout_read
import routing_overhead as ro
from pyramid_dbrouter import EngineRegistry, get_session_factory
from pyramid_dbrouter.settings import DEFAULT


class Abstains:
    """A router with no opinion on anything."""

    def db_for_read(self, model, **hints):
        return None

    def db_for_write(self, model, **hints):
        return None


def _statement_runs(sessions):
    """For each session, the runs of the ``get`` and ``select`` operations."""
    return {
        "get": [lambda n, s=s: ro.run_get(s, n) for s in sessions],
        "select": [lambda n, s=s: ro.run_select(s, n) for s in sessions],
    }


def _per_statement_curve(label, points, make_factory, rounds, block_ms):
    """Plain Session and one RoutingSession per point, interleaved."""
    engines = []
    sessions = []
    plain = ro.make_engine()
    engines.append(plain)
    sessions.append(sessionmaker(bind=plain)())
    names = ["plain Session"]
    for point in points:
        factory, made = make_factory(point)
        engines.extend(made)
        sessions.append(factory())
        names.append(f"{point} {label}")
    try:
        results = {}
        for op, runs in _statement_runs(sessions).items():
            _bench.log(f"  scale, {label}, {op}: ")
            results[op] = _bench.measure(names, runs, rounds, block_ms)
            _bench.log("\n")
    finally:
        for session in sessions:
            session.rollback()
            session.close()
        for engine in engines:
            engine.dispose()
    return {"points": list(points), "contenders": names, "operations": results}


def routers_curve(quick, rounds, block_ms):
    def make(count):
        default, other = ro.make_engine(), ro.make_engine()
        routers = [Abstains() for _ in range(count)]
        factory = get_session_factory({DEFAULT: default, "other": other}, routers)
        return factory, [default, other]

    points = (0, 1, 10, 50)
    return _per_statement_curve("routers", points, make, rounds, block_ms)


def engines_curve(quick, rounds, block_ms):
    def make(count):
        default = ro.make_engine()
        engines = {DEFAULT: default}
        for i in range(1, count):
            # never used: an engine connects on first use only
            engines[f"e{i}"] = create_engine("sqlite://")
        factory = get_session_factory(engines)
        return factory, list(engines.values())

    points = (2, 10, 100)
    return _per_statement_curve("engines", points, make, rounds, block_ms)


def shards_curve(quick, rounds, block_ms):
    points = (2, 8, 32)
    results = {}
    with tempfile.TemporaryDirectory(prefix="dbrouter-bench-shards-") as tmp:
        for count in points:
            _bench.log(f"  scale, {count} shards: ")
            new_url = fanout_read.url_maker(None, tmp)
            results[count] = fanout_read.measure(count, new_url, rounds, block_ms)
            _bench.log("\n")
            for file in Path(tmp).iterdir():
                file.unlink()
    return {
        "points": list(points),
        "contenders": list(fanout_read.CONTENDERS),
        "operations": {str(k): v for k, v in results.items()},
    }


# -- tenants -------------------------------------------------------------------------


class Tenants:
    """*count* SQLite files, copies of one holding routing_overhead's table."""

    def __init__(self, root, count):
        self.root = Path(root)
        template = self.root / "template.sqlite"
        if not template.exists():
            engine = ro.make_engine(f"sqlite:///{template}")
            engine.dispose()
        self.keys = [f"t{i:05d}" for i in range(count)]
        for key in self.keys:
            path = self.root / f"{key}.sqlite"
            if not path.exists():
                shutil.copyfile(template, path)

    def factory(self, key, settings):
        return f"sqlite:///{self.root}/{key}.sqlite"


def _tenant_run(factory, names):
    cycle = itertools.cycle(names)

    def run(n):
        for _ in range(n):
            with factory() as session:
                session.using_bind(next(cycle)).get(ro.Item, 1)

    return run


def _plain_run(factory):
    def run(n):
        for _ in range(n):
            with factory() as session:
                session.get(ro.Item, 1)

    return run


def tenants_curve(quick, rounds, block_ms):
    points = (10, 100, 1000) if quick else (10, 100, 1000, 10000)
    limits = (32, 10000)
    results = {}
    with tempfile.TemporaryDirectory(prefix="dbrouter-bench-tenants-") as tmp:
        tenants = Tenants(tmp, max(points))
        plain_engine = create_engine(f"sqlite:///{tmp}/template.sqlite")
        plain = sessionmaker(bind=plain_engine)
        for count in points:
            names = [f"tenant:{key}" for key in tenants.keys[:count]]
            registries, runs = [], [_plain_run(plain)]
            for limit in limits:
                registry = EngineRegistry(max_dynamic_engines=limit)
                registry.add(DEFAULT, create_engine(f"sqlite:///{tmp}/template.sqlite"))
                registry.add_factory("tenant", tenants.factory)
                registries.append(registry)
                factory = get_session_factory(registry)
                run = _tenant_run(factory, names)
                # warm up: open every engine the LRU can keep
                run(min(count, limit))
                runs.append(run)
            contenders = ["plain Session, 1 static engine"] + [
                f"max_dynamic_engines={limit}" for limit in limits
            ]
            _bench.log(f"  scale, {count} tenants: ")
            # a block of several operations per contender; the plain session
            # is so much faster than a miss that calibrating on it would make
            # blocks of misses last for seconds
            per_block = max(20, min(count, 400 if quick else 1000))
            results[str(count)] = _bench.measure(
                contenders, runs, rounds, 0, n=per_block
            )
            results[str(count)]["open_engines"] = {
                f"max_dynamic_engines={limit}": len(r.open_dynamic_names())
                for limit, r in zip(limits, registries, strict=True)
            }
            _bench.log("\n")
            for registry in registries:
                registry.dispose()
        plain_engine.dispose()
    return {
        "points": list(points),
        "limits": list(limits),
        "contenders": contenders,
        "operations": results,
    }


CURVES = {
    "routers": routers_curve,
    "engines": engines_curve,
    "shards": shards_curve,
    "tenants": tenants_curve,
}


def run(quick=False, only=None, rounds=None, block_ms=None):
    rounds = rounds or (5 if quick else 15)
    block_ms = block_ms or (30.0 if quick else 80.0)
    results = {}
    for name in only or CURVES:
        began = time.perf_counter()
        other_load = _bench.OtherLoad()
        curve_rounds = rounds if name != "tenants" else max(3, rounds // 2)
        results[name] = CURVES[name](quick, curve_rounds, block_ms)
        results[name]["rounds"] = curve_rounds
        results[name]["elapsed_s"] = time.perf_counter() - began
        results[name]["other_cpus"] = other_load.cpus()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", choices=list(CURVES))
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, only=args.only)
    for name, curve in results.items():
        print(f"## {name} ({curve['elapsed_s']:.0f} s)\n")
        print("| point | operation | contender | median µs/op | ratio |")
        print("| --- | --- | --- | ---: | ---: |")
        for op, data in curve["operations"].items():
            for contender, row in data["summary"].items():
                print(
                    f"| {name} | {op} | {contender} | {row['median_ns'] / 1000:.1f} "
                    f"| {row['ratio']:.3f}x |"
                )
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
