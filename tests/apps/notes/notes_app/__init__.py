"""A small application with three kinds of engines, tested by its own suite
(``tests/``) with nothing but the fixtures of ``pyramid_dbrouter.testing``:
notes on ``default``, archived notes on ``archive`` (``__bind_key__``), and
photos in each tenant's album (dbrouter_tenant, ``tenant:KEY``)."""

from pyramid.config import Configurator
from pyramid.view import view_config
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Tables of the static engines (``dbrouter.metadata``)."""


class AlbumBase(DeclarativeBase):
    """Tables of every tenant (``dbrouter.tenant.metadata``)."""


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))


class ArchivedNote(Base):
    __tablename__ = "archived_notes"
    __bind_key__ = "archive"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))


class Photo(AlbumBase):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))


@view_config(route_name="notes", request_method="GET", renderer="json")
def list_notes(request):
    return [n.text for n in request.dbsession.scalars(select(Note).order_by(Note.id))]


@view_config(route_name="notes", request_method="POST", renderer="json")
def add_note(request):
    request.dbsession.add(Note(text=request.params["text"]))
    return {"added": request.params["text"]}


@view_config(route_name="archive", request_method="POST", renderer="json")
def archive_note(request):
    request.dbsession.add(ArchivedNote(text=request.params["text"]))
    return {"archived": request.params["text"]}


@view_config(route_name="photos", request_method="GET", renderer="json")
def list_photos(request):
    photos = request.dbsession.scalars(select(Photo).order_by(Photo.id))
    return {"album": request.tenant, "photos": [p.title for p in photos]}


@view_config(route_name="photos", request_method="POST", renderer="json")
def add_photo(request):
    request.dbsession.add(Photo(title=request.params["title"]))
    return {"album": request.tenant}


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.include("dbrouter_tenant")  # includes pyramid_dbrouter
        config.add_route("notes", "/notes")
        config.add_route("archive", "/archive")
        config.add_route("photos", "/albums/{tenant}/photos")
        config.scan()
    return config.make_wsgi_app()
