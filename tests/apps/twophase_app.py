"""A small Pyramid application writing to the engines a request names.

Used by the two-phase suites, in-process (WebTest) and in subprocesses that
fault-injection tests kill at chosen points of the commit.
"""

from pyramid.config import Configurator
from pyramid.view import view_config
from sqlalchemy import Integer, String, create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    note: Mapped[str] = mapped_column(String(100), unique=True)


@view_config(route_name="write", request_method="POST", renderer="json")
def write(request):
    """Add an Entry with the note given to each engine in ``engines``."""
    note = request.params["note"]
    for name in request.params.get("engines", "").split(","):
        request.dbsession.using_bind(name).add(Entry(note=note))
    for name in request.params.get("read", "").split(","):
        if name:
            request.dbsession.using_bind(name).scalar(select(func.count(Entry.id)))
    request.dbsession.flush()
    if request.params.get("fail"):
        raise RuntimeError("the view failed after writing")
    return {"ok": True}


@view_config(route_name="caught", request_method="POST", renderer="json")
def caught(request):
    """A statement fails on engine ``fail_on`` and the view carries on: the
    failed branch must vote no, or the other engine commits alone."""
    session = request.dbsession
    try:
        session.using_bind(request.params["fail_on"]).execute(
            text("INSERT INTO entries (note) VALUES ('seed')")  # a duplicate
        )
    except DBAPIError:
        pass  # caught, and ignored, by the application
    session.using_bind(request.params["write_to"]).add(
        Entry(note=request.params["note"])
    )
    return {"ok": True}


#: attempts seen by the ``ssi`` view, by note
ATTEMPTS = {}


@view_config(route_name="ssi", request_method="POST", renderer="json")
def ssi(request):
    """Write skew against a concurrent transaction on the first attempt: the
    request's SERIALIZABLE transaction fails at PREPARE, and is retried."""
    note = request.params["note"]
    ATTEMPTS[note] = ATTEMPTS.get(note, 0) + 1
    session = request.dbsession
    session.execute(text("SELECT count(*) FROM entries WHERE note LIKE 'a%'"))
    other = None
    if ATTEMPTS[note] == 1:
        engine = session.engine("default").execution_options(
            isolation_level="SERIALIZABLE"
        )
        other = engine.connect()
        other.execute(text("SELECT count(*) FROM entries WHERE note LIKE 'b%'"))
    session.add(Entry(note=f"b-{note}-{ATTEMPTS[note]}"))
    session.flush()
    if other is not None:
        other.execute(
            text("INSERT INTO entries (note) VALUES (:n)"), {"n": f"a-{note}"}
        )
        other.commit()
        other.close()
    session.using_bind("pg2").add(Entry(note=note))
    return {"attempts": ATTEMPTS[note]}


def create_tables(urls):
    for url in urls:
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()


def count(url, note=None):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            statement = select(func.count(Entry.id))
            if note is not None:
                statement = statement.where(Entry.note == note)
            return conn.scalar(statement)
    finally:
        engine.dispose()


def make_app(engines, factories=None, **settings):
    """*engines*: ``{name: url}``, ``default`` included; *factories*:
    ``{prefix: engine factory}``."""
    settings = dict(settings)
    for name, url in engines.items():
        key = "sqlalchemy.url" if name == "default" else f"sqlalchemy.{name}.url"
        settings[key] = url
    settings.setdefault("retry.attempts", "3")
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        for prefix, factory in (factories or {}).items():
            config.add_db_engine_factory(prefix, factory)
        config.add_route("write", "/write")
        config.add_route("caught", "/caught")
        config.add_route("ssi", "/ssi")
        config.scan("twophase_app")
    return config.make_wsgi_app()
