"""The demo's models: what each album folder holds, and what spans albums.

* ``AlbumBase`` -- the tables of every album (``dbrouter.tenant.metadata``):
  ``pic``, ``tag`` and the many-to-many ``pic_tag``.  The tenant plugin's
  router sends them to the album's own engine, ``tenant:KEY`` (a SQLite
  file in the album's folder, or a PostgreSQL database).
  Each album's archive, ``archive:KEY`` (``archive.sqlite`` next to the
  album's file), has the same tables: an archived picture keeps its id, its
  ``pic_tag`` rows move with it, and its tags are copied there.
* ``Base`` -- the tables outside albums (``dbrouter.metadata``): the
  catalog of albums, on ``default`` (``__bind_key__``).
"""

from datetime import UTC, date, datetime

from sqlalchemy import Column, Date, DateTime, ForeignKey, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def _now():
    return datetime.now(UTC).replace(tzinfo=None)


class AlbumBase(DeclarativeBase):
    """The tables of each album's own database."""


pic_tag = Table(
    "pic_tag",
    AlbumBase.metadata,
    Column("pic_id", ForeignKey("pic.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True),
)


class Pic(AlbumBase):
    __tablename__ = "pic"
    # ids are never reused: an archived picture keeps its id for good
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    taken: Mapped[date] = mapped_column(Date)
    # written through its links (one-to-many: dbrouter_archive moves a
    # picture's pic_tag rows with it), read as a list of tags
    links: Mapped[list["PicTag"]] = relationship(cascade="all, delete-orphan")
    tags: Mapped[list["Tag"]] = relationship(
        secondary=pic_tag, order_by="Tag.name", viewonly=True
    )


class Tag(AlbumBase):
    __tablename__ = "tag"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


class PicTag(AlbumBase):
    """A picture's tag: a row of ``pic_tag``."""

    __table__ = pic_tag
    tag: Mapped[Tag] = relationship()


class Base(DeclarativeBase):
    """The tables outside albums: the catalog."""


class Album(Base):
    """The catalog of albums (what spans albums), on ``default``."""

    __tablename__ = "album"
    __bind_key__ = "default"
    key: Mapped[str] = mapped_column(String(48), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime, default=_now)
