"""The application of the dbrouter_replica suites: notes, read and written
over WebTest, on SQLite files or a real PostgreSQL primary and replica.

On SQLite, the "replica" is a second engine on the primary's own file: it
reads what the primary committed, as a caught-up replica does; which engine
served a statement is counted by :func:`count_statements`.
"""

import collections

from pyramid.config import Configurator
from sqlalchemy import String, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from webtest import TestApp

from pyramid_dbrouter import get_engines, init_db

SECRET = "test-secret-of-sixteen-chars-or-more"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))


def sqlite_settings(tmp_path, replicas=("replica1",), **extra):
    path = tmp_path / "primary.db"
    settings = {"sqlalchemy.url": f"sqlite:///{path}"}
    for name in replicas:
        settings[f"sqlalchemy.{name}.url"] = f"sqlite:///{path}"
    settings["dbrouter.replica.replicas"] = " ".join(replicas)
    settings["dbrouter.replica.secret"] = SECRET
    settings.update(extra)
    return settings


def note_view(request):
    note = request.dbsession.get(Note, int(request.matchdict["id"]))
    found = {"text": None if note is None else note.text}
    if request.params.get("where"):
        # through the same session, so on the engine the note was read from
        found["in_recovery"] = request.dbsession.scalar(
            select(func.pg_is_in_recovery())
        )
    return found


def notes_view(request):
    return [n.text for n in request.dbsession.scalars(select(Note).order_by(Note.id))]


def add_note(request):
    note = Note(id=int(request.params["id"]), text=request.params["text"])
    request.dbsession.add(note)
    return {"added": note.id}


def edit_note(request):
    note = request.dbsession.scalars(
        select(Note).where(Note.id == int(request.matchdict["id"]))
    ).one()
    note.text = request.params["text"]
    return {"edited": note.id}


def make_config(settings):
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    config.include("dbrouter_replica")
    config.add_route("note", "/notes/{id}")
    config.add_route("edit", "/notes/{id}/edit")
    config.add_route("notes", "/notes")
    config.add_view(note_view, route_name="note", renderer="json")
    config.add_view(
        notes_view, route_name="notes", renderer="json", request_method="GET"
    )
    config.add_view(
        add_note, route_name="notes", renderer="json", request_method="POST"
    )
    config.add_view(
        edit_note, route_name="edit", renderer="json", request_method="POST"
    )
    return config


def make_app(settings, create=True):
    config = make_config(settings)
    app = config.make_wsgi_app()
    if create:
        init_db(config.registry, Base.metadata)
    return TestApp(app), config.registry


def count_statements(registry):
    """``{engine name: [SQL verb, ...]}``, filled as statements run."""
    seen = collections.defaultdict(list)
    for name, engine in get_engines(registry).items():

        def note(conn, cursor, statement, *args, name=name):
            seen[name].append(statement.split()[0].upper())

        event.listen(engine, "before_cursor_execute", note)
    return seen


def main(global_config, **settings):
    """The WSGI application of an ini file (``use = call:replica_app:main``)."""
    return make_config(settings).make_wsgi_app()
