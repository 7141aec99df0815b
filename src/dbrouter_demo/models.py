"""The demo's model: albums of photos."""

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Album(Base):
    __tablename__ = "albums"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    photos: Mapped[list["Photo"]] = relationship(
        back_populates="album", cascade="all, delete-orphan"
    )


class Photo(Base):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    caption: Mapped[str] = mapped_column(String(200))
    album_id: Mapped[int] = mapped_column(ForeignKey("albums.id"))
    album: Mapped[Album] = relationship(back_populates="photos")
