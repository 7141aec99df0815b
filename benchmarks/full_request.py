"""Whole requests through Pyramid and pyramid_tm: pyramid_dbrouter against the
cookiecutter-starter's single-engine setup.

Two applications with the same model, routes and views, driven in-process by
WebTest (``TestApp(app, lint=False)``: WebTest's WSGI checks would only add
the same constant to both):

* **starter** -- the Pylons cookiecutter-starter (sqlalchemy backend)
  ``models/__init__.py`` in its original template form: ``engine_from_config``,
  a plain ``sessionmaker``, ``zope.sqlalchemy.register``, pyramid_tm with the
  explicit manager, pyramid_retry, ``request.dbsession`` reified (honouring
  ``environ["app.dbsession"]``).  It is the anchor.
* **pyramid_dbrouter, 2 engines** -- ``config.include("pyramid_dbrouter")``
  with ``sqlalchemy.url`` and ``sqlalchemy.archive.url`` configured (a
  realistic multi-engine application: write tracking, the two-phase policy
  and its hooks are active), the model on ``default``.
* **pyramid_dbrouter, 1 engine** -- the drop-in: only ``sqlalchemy.url``.

Requests: ``GET /items?after=K`` (a SELECT of 10 rows, rendered as JSON; the
transaction only read, so it is rolled back) and ``POST /items`` (one new
row, flushed for its id, committed).  On SQLite files (the starter's
default) and, when a cluster is given, on PostgreSQL over loopback TCP.

Throughput is requests per second of the median block time; the figure is
its ratio to the starter's (goal: at least 0.9x).  Run:
``.venv/bin/python benchmarks/full_request.py [--quick] [--postgresql]
[--json PATH]``; ``benchmarks/report.py`` calls :func:`run`.
"""

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import zope.sqlalchemy
from pyramid.config import Configurator
from sqlalchemy import String, engine_from_config, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from webtest import TestApp

import _bench
import pyramid_dbrouter

ROWS = 1000


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    value: Mapped[int]


# -- the views, shared by both applications --------------------------------------------


def list_items(request):
    after = int(request.params.get("after", 0))
    stmt = select(Item).where(Item.id > after).order_by(Item.id).limit(10)
    return [
        {"id": item.id, "name": item.name, "value": item.value}
        for item in request.dbsession.scalars(stmt)
    ]


def create_item(request):
    item = Item(name=request.POST["name"], value=int(request.POST["value"]))
    request.dbsession.add(item)
    request.dbsession.flush()
    return {"id": item.id}


def add_views(config):
    config.add_route("items", "/items")
    config.add_view(
        list_items, route_name="items", request_method="GET", renderer="json"
    )
    config.add_view(
        create_item, route_name="items", request_method="POST", renderer="json"
    )


# -- the cookiecutter-starter's models/__init__.py, template form ---------------------


def starter_get_engine(settings, prefix="sqlalchemy."):
    return engine_from_config(settings, prefix)


def starter_get_session_factory(engine):
    factory = sessionmaker()
    factory.configure(bind=engine)
    return factory


def starter_get_tm_session(session_factory, transaction_manager, request=None):
    dbsession = session_factory(info={"request": request})
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def starter_includeme(config):
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.include("pyramid_tm")
    config.include("pyramid_retry")
    dbengine = settings.get("dbengine")
    if not dbengine:
        dbengine = starter_get_engine(settings)
    session_factory = starter_get_session_factory(dbengine)
    config.registry["dbsession_factory"] = session_factory

    def dbsession(request):
        dbsession = request.environ.get("app.dbsession")
        if dbsession is None:
            dbsession = starter_get_tm_session(
                session_factory, request.tm, request=request
            )
        return dbsession

    config.add_request_method(dbsession, reify=True)


# -- applications --------------------------------------------------------------------


def starter_app(url):
    with Configurator(settings={"sqlalchemy.url": url}) as config:
        config.include(starter_includeme)
        add_views(config)
    return config.make_wsgi_app()


def dbrouter_app(url, archive_url=None):
    settings = {"sqlalchemy.url": url}
    if archive_url is not None:
        settings["sqlalchemy.archive.url"] = archive_url
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        add_views(config)
    return config.make_wsgi_app()


def engines_of(app):
    """The engines an application made, to create tables and dispose of."""
    factory = app.registry["dbsession_factory"]
    kw = factory.kw
    if "engines" in kw:
        return [engine for _name, engine in kw["engines"].static_items()]
    return [kw["bind"]]


def fill(engine):
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            Item.__table__.insert(),
            [{"name": f"item {i}", "value": i} for i in range(1, ROWS + 1)],
        )


class Contender:
    def __init__(self, name, app):
        self.name = name
        self.app = app
        self.testapp = TestApp(app, lint=False)
        self.engines = engines_of(app)
        self.posted = itertools.count()

    def get(self, n):
        request = self.testapp.get
        for i in range(n):
            request(f"/items?after={i % (ROWS - 10)}")

    def post(self, n):
        request = self.testapp.post
        counter = self.posted
        for _ in range(n):
            request("/items", {"name": "posted", "value": str(next(counter))})


def make_contenders(new_url):
    """*new_url()* gives a fresh database URL per engine."""
    contenders = [
        Contender("starter (sessionmaker + zope.sqlalchemy)", starter_app(new_url())),
        Contender("pyramid_dbrouter, 2 engines", dbrouter_app(new_url(), new_url())),
        Contender("pyramid_dbrouter, 1 engine", dbrouter_app(new_url())),
    ]
    for c in contenders:
        for engine in c.engines:
            fill(engine)
    return contenders


def check(contenders):
    """Same answers everywhere; POSTs commit; GETs leave nothing behind."""
    expected = None
    for c in contenders:
        answer = c.testapp.get("/items?after=5").json
        if expected is None:
            expected = answer
        elif answer != expected:
            raise SystemExit(f"{c.name}: GET answered {answer!r}, not {expected!r}")
        c.testapp.post("/items", {"name": "check", "value": "1"})
        default = c.engines[0]
        with default.connect() as conn:
            found = conn.scalar(
                select(func.count()).select_from(Item).where(Item.name == "check")
            )
        if found != 1:
            raise SystemExit(f"{c.name}: the POST was not committed")
        for other in c.engines[1:]:
            with other.connect() as conn:
                if conn.scalar(select(func.count()).select_from(Item)) != ROWS:
                    raise SystemExit(f"{c.name}: a row went to the wrong engine")
    if not isinstance(
        contenders[1].app.registry["dbsession_factory"](),
        pyramid_dbrouter.RoutingSession,
    ):
        raise SystemExit("the pyramid_dbrouter application has no RoutingSession")


OPERATIONS = {"GET (read)": "get", "POST (write)": "post"}


def run(quick=False, postgres=None, rounds=None, block_ms=None):
    """Measure; return the raw figures as a JSON-able dict.

    *postgres*: a started ``PostgresCluster``, each engine a database of its
    own there; None: SQLite files in a temporary directory.
    """
    rounds = rounds or (6 if quick else 25)
    block_ms = block_ms or (60.0 if quick else 200.0)
    began = time.perf_counter()
    other_load = _bench.OtherLoad()
    tmp = tempfile.TemporaryDirectory(prefix="dbrouter-bench-request-")
    names = itertools.count()
    if postgres is not None:

        def new_url():
            return postgres.url(postgres.create_database())

    else:

        def new_url():
            return f"sqlite:///{tmp.name}/app{next(names)}.sqlite"

    backend = "PostgreSQL" if postgres is not None else "SQLite files"
    contenders = make_contenders(new_url)
    results = {}
    try:
        check(contenders)
        for label, method in OPERATIONS.items():
            _bench.log(f"  full request ({backend}) {label}: ")
            results[label] = _bench.measure(
                [c.name for c in contenders],
                [getattr(c, method) for c in contenders],
                rounds,
                block_ms,
            )
            _bench.log("\n")
    finally:
        for c in contenders:
            for engine in c.engines:
                engine.dispose()
        tmp.cleanup()
    return {
        "backend": "postgresql" if postgres is not None else "sqlite",
        "rounds": rounds,
        "block_ms": block_ms,
        "elapsed_s": time.perf_counter() - began,
        "other_cpus": other_load.cpus(),
        "contenders": [c.name for c in contenders],
        "operations": results,
    }


def format_table(result):
    lines = [
        "| request | contender | median µs/request | requests/s "
        "| throughput ratio | paired [IQR] | CPU-time ratio |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for label, data in result["operations"].items():
        for name in data["contenders"]:
            row = data["summary"][name]
            lines.append(
                f"| {label} | {name} | {row['median_ns'] / 1000:.0f} "
                f"| {1e9 / row['median_ns']:.0f} | {1 / row['ratio']:.3f}x "
                f"| {1 / row['paired_median']:.3f} [{1 / row['paired_p75']:.3f}–"
                f"{1 / row['paired_p25']:.3f}] | {1 / row['cpu_ratio']:.3f}x |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    cluster = _bench.start_postgres("bench-request") if args.postgresql else None
    try:
        result = run(quick=args.quick, postgres=cluster)
    finally:
        if cluster is not None:
            _bench.stop_postgres(cluster)
    print(format_table(result))
    print(
        f"\nthroughput ratio: starter's median time / contender's (above 1: "
        f"faster); {result['rounds']} interleaved rounds; other processes kept "
        f"{result['other_cpus'] or 0:.2f} CPUs busy"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
