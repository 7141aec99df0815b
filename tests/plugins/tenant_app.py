"""The photo-album application the tenant tests run: every album (tenant)
holds photos; the ``default`` engine holds what albums share (here, a
visit counter).  Each view says in a comment what it exercises.
"""

import functools

from pyramid.config import Configurator
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class AlbumBase(DeclarativeBase):
    """The tables every tenant holds (dbrouter.tenant.metadata)."""


class Photo(AlbumBase):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))


class SharedBase(DeclarativeBase):
    """Tables of the ``default`` engine, shared by all tenants."""


class Visit(SharedBase):
    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(primary_key=True)
    album: Mapped[str] = mapped_column(String(60))


def list_photos(request):
    # routed by the tenant router to tenant:{album}
    photos = request.dbsession.scalars(select(Photo).order_by(Photo.id))
    return {"album": request.tenant, "photos": [p.title for p in photos]}


def add_photo(request):
    request.dbsession.add(Photo(title=request.params["title"]))
    return {"album": request.tenant}


def whoami(request):
    # request.tenant alone (no database): the resolver and the key check
    return {"tenant": request.tenant}


def write_two_albums(request):
    # two tenants written in one request: one transaction over two engines
    # (a two-phase commit on PostgreSQL); ``id`` forces the second write to
    # collide with an existing row
    from dbrouter_tenant import engine_name

    session = request.dbsession
    session.add(Photo(title=request.params["title"]))
    other = Photo(title=request.params["title"])
    if "id" in request.params:
        other.id = int(request.params["id"])
    with session.using_bind(engine_name(request.params["to"])):
        session.add(other)
    return {"written": [request.tenant, request.params["to"]]}


def move_photo(request):
    # the README's example of dbrouter.tenant.attach: a photo moved from this
    # album to another, both files committed together
    from dbrouter_tenant import engine_name

    photo = request.dbsession.get(Photo, int(request.params["id"]))  # this album
    with request.dbsession.using_bind(engine_name(request.params["to"])):
        request.dbsession.add(Photo(title=photo.title))  # the other one
    request.dbsession.delete(photo)
    return {"moved": photo.title}


PATHS = {
    "photos": "/albums/{tenant}/photos",
    "whoami": "/whoami",
    "both": "/albums/{tenant}/both",
}


def make_app(settings, **extra):
    """A WSGI app of *settings* (``dbrouter.tenant.*`` included)."""
    settings = {"dbrouter.metadata": "tenant_app:AlbumBase", **settings}
    with Configurator(settings=settings) as config:
        config.include("dbrouter_tenant")
        config.add_route("photos", PATHS["photos"])
        config.add_route("whoami", PATHS["whoami"])
        config.add_route("whoami_in_album", "/albums/{tenant}/whoami")
        config.add_route("both", PATHS["both"])
        config.add_route("move", "/albums/{tenant}/move")
        view = functools.partial(config.add_view, renderer="json")
        view(list_photos, route_name="photos", request_method="GET")
        view(add_photo, route_name="photos", request_method="POST")
        view(whoami, route_name="whoami")
        view(whoami, route_name="whoami_in_album")
        view(write_two_albums, route_name="both", request_method="POST")
        view(move_photo, route_name="move", request_method="POST")
    return config.make_wsgi_app()


def main(global_config, **settings):
    """The paste entry point (``use = call:tenant_app:main``)."""
    return make_app(settings)
