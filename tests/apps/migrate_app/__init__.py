"""The application the Alembic suite migrates: three static engines and a
folder of tenants (dbrouter_tenant, sqlite-folder mode).

Where each table lives, and by which rule:

======== ======================= =========================================
table    engines                 why
======== ======================= =========================================
users    default                 ``AppRouter.allow_migrate``
events   archive                 ``__bind_key__ = "archive"``
invoices legacy                  ``__bind_key__ = "legacy"``
tags     default, archive,       no rule: every engine -- but the tenant
         legacy                  router keeps shared tables off tenants
photos   every tenant            the tenant router (``AlbumBase``)
======== ======================= =========================================
"""

from pyramid.config import Configurator
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The shared tables (``dbrouter.metadata``)."""


class AlbumBase(DeclarativeBase):
    """Every tenant's tables (``dbrouter.tenant.metadata``)."""


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))


class Event(Base):
    __tablename__ = "events"
    __bind_key__ = "archive"
    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(String(60))


class Invoice(Base):
    __tablename__ = "invoices"
    __bind_key__ = "legacy"
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int]


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(30))


class Photo(AlbumBase):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    caption: Mapped[str | None] = mapped_column(String(200))


class Comment(AlbumBase):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"))
    body: Mapped[str] = mapped_column(String(200))


class AppRouter:
    """Users live on ``default`` only."""

    def allow_migrate(self, db, model, **hints):
        if model is User:
            return db == "default"
        return None


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.include("dbrouter_tenant")
    return config.make_wsgi_app()
