"""Models and an application for the dbrouter_shard tests.

Users are sharded by their id; posts by their user's id, with ids made by
``Shards.new_id`` (so ``get(Post, id)`` finds the shard from the id);
comments follow their post; settings are not sharded at all.
"""

import collections
import contextlib

from pyramid.config import Configurator
from sqlalchemy import BigInteger, ForeignKey, Integer, String, event
from sqlalchemy.orm import DeclarativeBase, mapped_column, relationship

from dbrouter_shard import FOLLOW_PARENT
from pyramid_dbrouter import get_engines, init_db


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "shard_users"
    __shard_key__ = "id"
    id = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name = mapped_column(String(50))
    posts = relationship("Post", back_populates="user")


class Post(Base):
    __tablename__ = "shard_posts"
    __shard_key__ = "user_id"
    __shard_ids__ = True
    id = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id = mapped_column(ForeignKey("shard_users.id"))
    title = mapped_column(String(50))
    user = relationship(User, back_populates="posts")
    comments = relationship("Comment")


class Comment(Base):
    __tablename__ = "shard_comments"
    __shard_key__ = FOLLOW_PARENT
    id = mapped_column(Integer, primary_key=True)
    post_id = mapped_column(ForeignKey("shard_posts.id"))
    body = mapped_column(String(50))


class Setting(Base):
    __tablename__ = "shard_settings"
    id = mapped_column(Integer, primary_key=True)
    value = mapped_column(String(50))


def sqlite_settings(tmp_path, count, **extra):
    """Settings of ``default`` and ``shard0``..``shard<count-1>``, SQLite files."""
    settings = {"sqlalchemy.url": f"sqlite:///{tmp_path / 'default.db'}"}
    for index in range(count):
        name = f"shard{index}"
        settings[f"sqlalchemy.{name}.url"] = f"sqlite:///{tmp_path / name}.db"
    settings["dbrouter.shard.shards"] = " ".join(f"shard{i}" for i in range(count))
    settings.update(extra)
    return settings


def make_app(settings, create=True):
    """The registry of an application including pyramid_dbrouter and
    dbrouter_shard, with the tables made where ``allow_migrate`` says."""
    config = Configurator(settings=settings)
    config.include("pyramid_dbrouter")
    config.include("dbrouter_shard")
    config.commit()
    if create:
        init_db(config.registry, Base.metadata)
    return config.registry


@contextlib.contextmanager
def counting(registry):
    """``{engine name: [SQL]}`` of the statements sent inside the block."""
    sent = collections.defaultdict(list)
    listeners = []
    for name, engine in get_engines(registry).items():

        def listen(conn, cursor, statement, params, context, executemany, name=name):
            sent[name].append(statement)

        event.listen(engine, "before_cursor_execute", listen)
        listeners.append((engine, listen))
    try:
        yield sent
    finally:
        for engine, listen in listeners:
            event.remove(engine, "before_cursor_execute", listen)


def selects(sent):
    """Only the engines that were sent a SELECT, with those SELECTs."""
    found = {}
    for name, statements in sent.items():
        chosen = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        if chosen:
            found[name] = chosen
    return found
