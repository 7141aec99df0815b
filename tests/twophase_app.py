"""A small Pyramid application writing to the engines a request names.

Used by the two-phase suites, in-process (WebTest) and in subprocesses that
fault-injection tests kill at chosen points of the commit.
"""

from pyramid.config import Configurator
from pyramid.view import view_config
from sqlalchemy import Integer, String, create_engine, func, select
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


def make_app(engines, **settings):
    """*engines*: ``{name: url}``, ``default`` included."""
    settings = dict(settings)
    for name, url in engines.items():
        key = "sqlalchemy.url" if name == "default" else f"sqlalchemy.{name}.url"
        settings[key] = url
    settings.setdefault("retry.attempts", "3")
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.add_route("write", "/write")
        config.scan("twophase_app")
    return config.make_wsgi_app()
