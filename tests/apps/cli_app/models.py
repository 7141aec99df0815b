"""The models of the test application: one per routing rule."""

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    """Routed by its ``__bind_key__``: reads and writes go to ``auth``."""

    __tablename__ = "users"
    __bind_key__ = "auth"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Photo(Base):
    """Routed by :class:`~cli_app.routers.PhotoRouter`: read from ``default``
    and ``archive`` (a fan-out), written to ``default``."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))


class Tag(Base):
    """Routed by nobody: every router abstains, so it lives in ``default``."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40))
