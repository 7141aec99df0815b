"""What the first-party plugins' routers cost, side by side with the core.

Each plugin is configured as an application would configure it (a
``Configurator``, ``config.include(...)``, the ``dbrouter.*`` settings) and
its router's choice is timed against the same work routed by hand:

* **dbrouter_replica** (issue 9): a read through ``RoutingSession`` with the
  replica router choosing the replica (health checked at most once a second,
  as configured; no request, so no pin cookie to read) against the same
  session factory over the same engines with the read pinned by hand,
  ``session.using_bind("replica1")`` -- the core alone.  Operations: ``get``
  and the 9-row ``select`` in one session (the replica is chosen once per
  session, then remembered), and ``get, new session`` (each read in its own
  session: the choice, the health look-up and the connection probe every
  time).  On SQLite the "replica" is a second file holding a copy of the
  primary's rows, declared ``replica_of`` the primary: no streaming replica
  is needed to measure what the router costs;
* **dbrouter_shard** (issue 10): ``session.get(User, k)`` and
  ``select(User).where(User.user_id == k)`` routed by the shard router
  against ``session.using_bind(shards.shard_for(k))`` doing the same, over 4
  shards, ``k`` walking every shard;
* **dbrouter_tenant** (issue 11, ``sqlite-folder`` mode): a short session
  getting one row of the request's tenant -- the router finds the tenant
  engine from ``request.tenant`` -- against a plain SQLAlchemy ``Session``
  on one static SQLite file doing the same ``get``.  *Hit*: round-robin over
  8 tenants, every engine in the LRU; *miss*: round-robin over twice
  ``dbrouter.max_dynamic_engines`` tenants, so every request opens an engine
  and the LRU disposes of one.  Also shown: the tenant engine pinned by hand
  (``using_bind("tenant:KEY")``: the core's dynamic engines without the
  router) and ``tenant_scope`` (a job: its own transaction manager).

Every contender is checked first to return the same rows from the same
engine (statements counted per engine); nothing asserts on a time.  Method:
``_bench.py`` (interleaved rounds, medians, paired ratios, CPU-time ratios).

Run: ``.venv/bin/python benchmarks/plugins.py [--quick] [--postgresql]
[--only replica|shard|tenant] [--json PATH]``; ``benchmarks/report.py``
calls :func:`run` (its part ``plugins``).
"""

import argparse
import collections
import contextlib
import functools
import itertools
import json
import tempfile
import time
from pathlib import Path

from pyramid.config import Configurator
from sqlalchemy import BigInteger, String, create_engine, event, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import _bench
from dbrouter_shard import get_shards
from dbrouter_tenant import copy_tenant, create_tenant, engine_name, tenant_scope
from dbrouter_tenant.scope import request_tenant
from pyramid_dbrouter import bind_of, get_engines, init_db

ROWS = 1000  # rows of each table
SHARDS = 4
HIT_TENANTS = 8
MAX_DYNAMIC_ENGINES = 32  # the core's default
MISS_TENANTS = 2 * MAX_DYNAMIC_ENGINES

# -- models ---------------------------------------------------------------------------


class ReplicaBase(DeclarativeBase):
    pass


class Item(ReplicaBase):
    __tablename__ = "item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    value: Mapped[int]


class ShardBase(DeclarativeBase):
    pass


class User(ShardBase):
    __tablename__ = "users"
    __shard_key__ = "user_id"

    user_id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    name: Mapped[str] = mapped_column(String(50))


class AlbumBase(DeclarativeBase):
    """The tables every tenant holds (``dbrouter.tenant.metadata``)."""


class Photo(AlbumBase):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))


# -- shared helpers -------------------------------------------------------------------


def _app(settings, *includes):
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    for name in includes:
        config.include(name)
    config.commit()
    return config.registry


@contextlib.contextmanager
def counting(engines):
    """``{engine name: statements}`` run while the block runs."""
    counts = collections.Counter()
    listeners = []
    for name, engine in engines.items():

        def count(conn, cursor, statement, *args, _name=name, **kw):
            # the replica's lag check (PostgreSQL, once a second) is not a read
            if "pg_last_wal_receive_lsn" not in statement:
                counts[_name] += 1

        event.listen(engine, "before_cursor_execute", count)
        listeners.append((engine, count))
    try:
        yield counts
    finally:
        for engine, count in listeners:
            event.remove(engine, "before_cursor_execute", count)


class NotTheSameWork(Exception):
    """A contender does not do what the others do: nothing is timed."""


def _check(label, got, expected):
    if got != expected:
        raise NotTheSameWork(f"{label}: got {got!r}, expected {expected!r}")


class UrlMaker:
    """A new database's URL: an SQLite file under *folder*, or a database
    of its own on the PostgreSQL cluster *postgres*."""

    def __init__(self, folder, postgres=None):
        self.folder = Path(folder)
        self.postgres = postgres

    def __call__(self, name):
        if self.postgres is not None:
            return self.postgres.url(self.postgres.create_database())
        return f"sqlite:///{self.folder / name}.sqlite"


def _measure_ops(label, names, ops, rounds, block_ms):
    """``{op: _bench.measure(...)}``; *ops* is ``{op: (runs, teardown)}``."""
    results = {}
    for op, (runs, teardown) in ops.items():
        _bench.log(f"  plugins, {label} {op}: ")
        try:
            results[op] = _bench.measure(names, runs, rounds, block_ms)
        finally:
            teardown()
        _bench.log("\n")
    return results


def _session_op(factory, body):
    """(run, close): *body(session, n)* in one session, rolled back after."""
    session = factory()
    return functools.partial(body, session), lambda: _close(session)


def _close(session):
    session.rollback()
    session.close()


# -- dbrouter_replica -----------------------------------------------------------------

REPLICA = "replica1"
REPLICA_CONTENDERS = (
    "core alone: using_bind('replica1')",
    "dbrouter_replica: router picks the replica",
)
SMALL_SELECT = select(Item).where(Item.id < 10)


def _fill_items(engine):
    ReplicaBase.metadata.drop_all(engine)
    ReplicaBase.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Item),
            [{"id": i, "name": f"item {i}", "value": i} for i in range(1, ROWS + 1)],
        )


def replica_app(new_url):
    settings = {
        "sqlalchemy.url": new_url("primary"),
        f"sqlalchemy.{REPLICA}.url": new_url(REPLICA),
        "dbrouter.replica.replicas": REPLICA,
        # no request here: no pin cookie to read; 0 turns pinning off
        "dbrouter.replica.pin_seconds": "0",
    }
    registry = _app(settings, "dbrouter_replica")
    engines = get_engines(registry)
    for engine in engines.values():
        # what streaming replication would do: the replica holds the rows too
        _fill_items(engine)
    return registry, engines


def _replica_get(pinned, session, n):
    get, expunge_all = session.get, session.expunge_all
    if pinned:
        using_bind = session.using_bind
        for i in range(n):
            expunge_all()
            using_bind(REPLICA).get(Item, i % ROWS + 1)
    else:
        for i in range(n):
            expunge_all()
            get(Item, i % ROWS + 1)


def _replica_select(pinned, session, n):
    expunge_all = session.expunge_all
    if pinned:
        using_bind = session.using_bind
        for _ in range(n):
            expunge_all()
            using_bind(REPLICA).scalars(SMALL_SELECT).all()
    else:
        scalars = session.scalars
        for _ in range(n):
            expunge_all()
            scalars(SMALL_SELECT).all()


def _replica_get_new_session(pinned, factory, n):
    for i in range(n):
        with factory() as session:
            if pinned:
                session.using_bind(REPLICA).get(Item, i % ROWS + 1)
            else:
                session.get(Item, i % ROWS + 1)


def check_replica(factory, engines):
    for pinned, name in zip((True, False), REPLICA_CONTENDERS, strict=True):
        with counting(engines) as counts, factory() as session:
            target = session.using_bind(REPLICA) if pinned else session
            item = target.get(Item, 5)
            rows = [i.id for i in target.scalars(SMALL_SELECT).all()]
            _check(f"{name}: get", (item.id, item.name), (5, "item 5"))
            _check(f"{name}: select", rows, list(range(1, 10)))
            # the replica's objects are the primary's (replica_of)
            _check(f"{name}: identity", bind_of(item), "default")
        _check(f"{name}: statements per engine", dict(counts), {REPLICA: 2})


def replica_measure(new_url, rounds, block_ms):
    registry, engines = replica_app(new_url)
    factory = registry["dbsession_factory"]
    try:
        check_replica(factory, engines)
        ops = {}
        for op, body in (("get", _replica_get), ("select", _replica_select)):
            states = [_session_op(factory, functools.partial(body, p)) for p in (1, 0)]
            runs = [run for run, _close in states]
            ops[op] = (runs, lambda states=states: [c() for _r, c in states])
        ops["get, new session"] = (
            [
                functools.partial(_replica_get_new_session, p, factory)
                for p in (True, False)
            ],
            lambda: None,
        )
        return _measure_ops("replica", REPLICA_CONTENDERS, ops, rounds, block_ms)
    finally:
        for engine in engines.values():
            engine.dispose()


# -- dbrouter_shard -------------------------------------------------------------------

SHARD_CONTENDERS = (
    "core alone: using_bind(shards.shard_for(k))",
    "dbrouter_shard: router by shard key",
)


def shard_app(new_url):
    names = [f"shard{i}" for i in range(SHARDS)]
    settings = {"sqlalchemy.url": new_url("shard-default")}
    for name in names:
        settings[f"sqlalchemy.{name}.url"] = new_url(name)
    settings["dbrouter.shard.shards"] = " ".join(names)
    registry = _app(settings, "dbrouter_shard")
    engines = get_engines(registry)
    for name in names:
        ShardBase.metadata.drop_all(engines[name])
    init_db(registry, ShardBase.metadata)  # the shards only (allow_migrate)
    shards = get_shards(registry)
    rows = collections.defaultdict(list)
    for k in range(1, ROWS + 1):
        rows[shards.shard_for(k)].append({"user_id": k, "name": f"user {k}"})
    for name, values in rows.items():
        with engines[name].begin() as conn:
            conn.execute(insert(User), values)
    return registry, engines, shards


def _shard_get(shard_for, pinned, session, n):
    get, expunge_all, using_bind = session.get, session.expunge_all, session.using_bind
    if pinned:
        for i in range(n):
            k = i % ROWS + 1
            expunge_all()
            using_bind(shard_for(k)).get(User, k)
    else:
        for i in range(n):
            expunge_all()
            get(User, i % ROWS + 1)


def _shard_select(shard_for, pinned, session, n):
    expunge_all, using_bind = session.expunge_all, session.using_bind
    scalars = session.scalars
    for i in range(n):
        k = i % ROWS + 1
        expunge_all()
        stmt = select(User).where(User.user_id == k)
        if pinned:
            using_bind(shard_for(k)).scalars(stmt).all()
        else:
            scalars(stmt).all()


def check_shard(factory, engines, shards):
    for pinned, name in zip((True, False), SHARD_CONTENDERS, strict=True):
        for k in (1, 2, 3, 4, 999):
            shard = shards.shard_for(k)
            with counting(engines) as counts, factory() as session:
                target = session.using_bind(shard) if pinned else session
                user = target.get(User, k)
                rows = target.scalars(select(User).where(User.user_id == k)).all()
                _check(f"{name}: get {k}", (user.user_id, user.name), (k, f"user {k}"))
                _check(f"{name}: select {k}", [u.user_id for u in rows], [k])
                _check(f"{name}: {k}'s engine", bind_of(user), shard)
            _check(f"{name}: statements for {k}", dict(counts), {shard: 2})


def shard_measure(new_url, rounds, block_ms):
    registry, engines, shards = shard_app(new_url)
    factory = registry["dbsession_factory"]
    try:
        check_shard(factory, engines, shards)
        ops = {}
        for op, body in (
            ("get by shard key", _shard_get),
            ("select pinned", _shard_select),
        ):
            states = [
                _session_op(factory, functools.partial(body, shards.shard_for, p))
                for p in (True, False)
            ]
            runs = [run for run, _close in states]
            ops[op] = (runs, lambda states=states: [c() for _r, c in states])
        return _measure_ops("shard", SHARD_CONTENDERS, ops, rounds, block_ms)
    finally:
        for engine in engines.values():
            engine.dispose()


# -- dbrouter_tenant ------------------------------------------------------------------

PLAIN = "plain Session, 1 static engine"
TENANT_PINNED = "core alone: using_bind('tenant:KEY')"
TENANT = "dbrouter_tenant: request tenant, router"
TENANT_SCOPE = "dbrouter_tenant: tenant_scope (a job)"
TENANT_CONTENDERS = (PLAIN, TENANT_PINNED, TENANT, TENANT_SCOPE)


class TenantRequest:
    """What the tenant router asks of a request: ``request.tenant``,
    resolved once per request by the plugin's own ``request_tenant`` (the
    route's key through the resolver, the key check, the folder's
    existence), as Pyramid's reified request method does.  A real
    ``Request`` would add WebOb's cost to one side only."""

    __slots__ = ("registry", "matchdict", "_tenant")

    def __init__(self, registry, key):
        self.registry = registry
        self.matchdict = {"tenant": key}
        self._tenant = None

    @property
    def tenant(self):
        if self._tenant is None:
            self._tenant = request_tenant(self)
        return self._tenant


def tenant_app(root, shared):
    settings = {
        "sqlalchemy.url": f"sqlite:///{shared}",
        "dbrouter.tenant.mode": "sqlite-folder",
        "dbrouter.tenant.root": str(root),
        "dbrouter.tenant.metadata": f"{__name__}:AlbumBase",
        "dbrouter.max_dynamic_engines": str(MAX_DYNAMIC_ENGINES),
    }
    config = Configurator(settings=settings)
    config.include("dbrouter_tenant")
    config.commit()
    return config.registry


def make_tenants(root, registry, count):
    """*count* album folders, each holding ROWS photos; their keys."""
    keys = [f"album{i:03d}" for i in range(count)]
    create_tenant(registry, keys[0])
    engine = create_engine(f"sqlite:///{root / keys[0] / 'album.sqlite'}")
    with engine.begin() as conn:
        conn.execute(
            insert(Photo),
            [{"id": i, "title": f"photo {i}"} for i in range(1, ROWS + 1)],
        )
    engine.dispose()
    for key in keys[1:]:
        copy_tenant(registry, keys[0], key)
    return keys


def _tenant_runs(plain, registries, keys):
    """One run per contender, each walking *keys* round-robin; one
    application (and so one LRU of engines) per tenant contender."""
    pinned_registry, routed_registry, scope_registry = registries
    pinned_factory = pinned_registry["dbsession_factory"]
    routed_factory = routed_registry["dbsession_factory"]
    names = itertools.cycle([engine_name(k) for k in keys])
    # one walk per contender, each on its own application's LRU
    routed_keys, scope_keys = itertools.cycle(keys), itertools.cycle(keys)

    def run_plain(n):
        for _ in range(n):
            with plain() as session:
                session.get(Photo, 1)

    def run_pinned(n):
        for _ in range(n):
            with pinned_factory() as session:
                session.using_bind(next(names)).get(Photo, 1)

    def run_routed(n):
        for _ in range(n):
            request = TenantRequest(routed_registry, next(routed_keys))
            with routed_factory(info={"request": request}) as session:
                session.get(Photo, 1)

    def run_scope(n):
        for _ in range(n):
            with tenant_scope(scope_registry, next(scope_keys)) as session:
                session.get(Photo, 1)

    return [run_plain, run_pinned, run_routed, run_scope]


def check_tenants(plain, registries, keys):
    pinned_registry, routed_registry, scope_registry = registries
    key = keys[-1]
    with plain() as session:
        _check(f"{PLAIN}: get", session.get(Photo, 7).title, "photo 7")
    with pinned_registry["dbsession_factory"]() as session:
        photo = session.using_bind(engine_name(key)).get(Photo, 7)
        _check(
            f"{TENANT_PINNED}: get",
            (photo.title, bind_of(photo)),
            ("photo 7", engine_name(key)),
        )
    request = TenantRequest(routed_registry, key)
    with routed_registry["dbsession_factory"](info={"request": request}) as session:
        photo = session.get(Photo, 7)
        _check(
            f"{TENANT}: get",
            (photo.title, bind_of(photo)),
            ("photo 7", engine_name(key)),
        )
    with tenant_scope(scope_registry, key) as session:
        photo = session.get(Photo, 7)
        _check(
            f"{TENANT_SCOPE}: get",
            (photo.title, bind_of(photo)),
            ("photo 7", engine_name(key)),
        )


def _open_engines(registry):
    return len(registry["dbrouter"].engines.open_dynamic_names())


def tenant_measure(quick, rounds, block_ms):
    results = {}
    with tempfile.TemporaryDirectory(prefix="dbrouter-bench-plugins-") as tmp:
        root = Path(tmp) / "albums"
        root.mkdir()
        shared = Path(tmp) / "shared.sqlite"
        registries = [tenant_app(root, shared) for _ in range(3)]
        keys = make_tenants(root, registries[0], MISS_TENANTS)
        # the anchor's file: a copy of one album, on an engine of its own
        plain_engine = create_engine(f"sqlite:///{root / keys[0] / 'album.sqlite'}")
        plain = sessionmaker(bind=plain_engine)
        try:
            for case, count in (("hit", HIT_TENANTS), ("miss", MISS_TENANTS)):
                check_tenants(plain, registries, keys[:count])
                runs = _tenant_runs(plain, registries, keys[:count])
                for run in runs[1:]:
                    run(count)  # the LRU as it is in use: full of open engines
                _bench.log(f"  plugins, tenant {case} ({count} tenants): ")
                if case == "hit":
                    data = _bench.measure(TENANT_CONTENDERS, runs, rounds, block_ms)
                else:
                    # calibrating on the plain session would make blocks of
                    # misses last for seconds: whole round-robin cycles instead
                    per_block = count if quick else 4 * count
                    data = _bench.measure(
                        TENANT_CONTENDERS, runs, rounds, 0, n=per_block
                    )
                data["tenants"] = count
                data["open_engines"] = {
                    name: _open_engines(r)
                    for name, r in zip(TENANT_CONTENDERS[1:], registries, strict=True)
                }
                results[case] = data
                _bench.log("\n")
        finally:
            plain_engine.dispose()
            for registry in registries:
                registry["dbrouter"].engines.dispose()
    return results


# -- the part -------------------------------------------------------------------------

PLUGINS = ("replica", "shard", "tenant")


def run(quick=False, postgres=None, only=None, rounds=None, block_ms=None):
    """Measure; a JSON-able dict.  *postgres*: a started ``PostgresCluster``
    (tests/_servers.py), each engine a database of its own there (the
    tenant plugin's sqlite-folder mode is measured on SQLite only)."""
    rounds = rounds or (8 if quick else 30)
    block_ms = block_ms or (30.0 if quick else 100.0)
    only = [p for p in (only or PLUGINS) if postgres is None or p != "tenant"]
    began = time.perf_counter()
    other_load = _bench.OtherLoad()
    results = {}
    with tempfile.TemporaryDirectory(prefix="dbrouter-bench-plugins-") as tmp:
        new_url = UrlMaker(tmp, postgres)
        if "replica" in only:
            results["replica"] = replica_measure(new_url, rounds, block_ms)
        if "shard" in only:
            results["shard"] = shard_measure(new_url, rounds, block_ms)
    if "tenant" in only:
        results["tenant"] = tenant_measure(quick, max(5, rounds // 2), block_ms)
    return {
        "backend": "postgresql" if postgres is not None else "sqlite",
        "rounds": rounds,
        "block_ms": block_ms,
        "shards": SHARDS,
        "max_dynamic_engines": MAX_DYNAMIC_ENGINES,
        "elapsed_s": time.perf_counter() - began,
        "other_cpus": other_load.cpus(),
        "plugins": results,
    }


def format_table(result):
    """The full table: every plugin, operation and contender."""
    lines = [
        "| plugin | operation | N | contender | median µs/op | ratio "
        "| paired ratio [IQR] | CPU-time ratio |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for plugin, ops in result["plugins"].items():
        for op, data in ops.items():
            label = op
            if plugin == "tenant":
                label = f"{op}, {data['tenants']} tenants round-robin"
            for name in data["contenders"]:
                row = data["summary"][name]
                lines.append(
                    f"| {plugin} | {label} | {data['n']} | {name} "
                    f"| {row['median_ns'] / 1000:.1f} | {row['ratio']:.3f}x "
                    f"| {row['paired_median']:.3f} "
                    f"[{row['paired_p25']:.3f}–{row['paired_p75']:.3f}] "
                    f"| {row['cpu_ratio']:.3f}x |"
                )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--only", action="append", choices=PLUGINS)
    parser.add_argument("--rounds", type=int, help="timed rounds per operation")
    parser.add_argument("--block-ms", type=float, help="target duration of a block")
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="also on a PostgreSQL cluster started for the run (replica, shard)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers")
    args = parser.parse_args(argv)
    options = dict(
        quick=args.quick, only=args.only, rounds=args.rounds, block_ms=args.block_ms
    )
    found = {"sqlite": run(**options)}
    if args.postgresql:
        cluster = _bench.start_postgres("bench-plugins")
        try:
            found["postgresql"] = run(postgres=cluster, **options)
        finally:
            _bench.stop_postgres(cluster)
    info = _bench.machine()
    for backend, result in found.items():
        print(f"\n## The plugins' routing cost ({backend})\n")
        print(format_table(result))
        print(
            f"\nother processes kept {_other(result)} CPUs busy; "
            f"{result['elapsed_s']:.0f} s"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, **found}, indent=1) + "\n"
        )


def _other(result):
    value = result.get("other_cpus")
    return "unknown" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
