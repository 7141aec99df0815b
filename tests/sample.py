"""Models and routers shared by the test suites.

The routers are the two of Django's documentation ("Multiple databases",
an example), written for pyramid_dbrouter: an auth router sending the auth
application's models to ``auth_db``, and a primary/replica router.
"""

import sqlite3

from sqlalchemy import Column, ForeignKey, Integer, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pyramid_dbrouter import bind_of


class Base(DeclarativeBase):
    pass


class User(Base):
    """A model of the "auth" application."""

    __tablename__ = "users"
    app_label = "auth"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Group(Base):
    __tablename__ = "groups"
    app_label = "auth"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


album_tags = Table(
    "album_tags",
    Base.metadata,
    Column("album_id", ForeignKey("albums.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class Album(Base):
    __tablename__ = "albums"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    owner_id: Mapped[int | None] = mapped_column(Integer)
    photos: Mapped[list["Photo"]] = relationship(back_populates="album")
    tags: Mapped[list["Tag"]] = relationship(secondary=album_tags)


class Photo(Base):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    score: Mapped[int | None] = mapped_column(Integer)
    album_id: Mapped[int | None] = mapped_column(ForeignKey("albums.id"))
    album: Mapped[Album | None] = relationship(back_populates="photos")


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class LegacyInvoice(Base):
    """A model pinned to an engine the Flask-SQLAlchemy way."""

    __tablename__ = "legacy_invoices"
    __bind_key__ = "legacy"
    id: Mapped[int] = mapped_column(primary_key=True)
    amount: Mapped[int] = mapped_column(Integer)


class AuthRouter:
    """Send the auth application's models to ``auth_db``."""

    route_app_labels = {"auth"}

    def db_for_read(self, model, **hints):
        if getattr(model, "app_label", None) in self.route_app_labels:
            return "auth_db"
        return None

    def db_for_write(self, model, **hints):
        if getattr(model, "app_label", None) in self.route_app_labels:
            return "auth_db"
        return None

    def allow_relation(self, obj1, obj2, **hints):
        if (
            getattr(obj1, "app_label", None) in self.route_app_labels
            or getattr(obj2, "app_label", None) in self.route_app_labels
        ):
            return True
        return None

    def allow_migrate(self, db, model, **hints):
        if getattr(model, "app_label", None) in self.route_app_labels:
            return db == "auth_db"
        return None


class PrimaryReplicaRouter:
    """Reads from the replica, writes to the primary (``default``)."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        pool = {"default", "replica"}
        if bind_of(obj1) in pool and bind_of(obj2) in pool:
            return True
        return None

    def allow_migrate(self, db, model, **hints):
        return True


class EverythingTo:
    """Reads and writes of every model to one engine."""

    def __init__(self, name):
        self.name = name

    def db_for_read(self, model, **hints):
        return self.name

    def db_for_write(self, model, **hints):
        return self.name


def rows(path, sql):
    """Read a SQLite file directly, bypassing SQLAlchemy and the session."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


class EverythingTo_a(EverythingTo):  # noqa: N801 - named for settings files
    def __init__(self):
        super().__init__("a")


class Reads:
    """Reads of every model from ``replica``."""

    def db_for_read(self, model, **hints):
        return "replica"
