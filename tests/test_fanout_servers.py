"""Fan-out over PostgreSQL servers: merged exactly, and a slow or failed
database never yields a partial answer.

The databases are real (``tests/server_fixtures.py``): one answers after
``pg_sleep``, one is on a cluster that is stopped, one lacks the table.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import OperationalError

from pyramid_dbrouter import FanoutError, bind_of, get_session_factory
from pyramid_dbrouter.fanout import (
    FanoutEngineError,
    FanoutTimeoutError,
    configure_fanout,
)
from sample import Base, Photo
from test_fanout import photo_rows

NAMES = ("default", "s2", "s3")


class FanOut:
    def db_for_read(self, model, **hints):
        return list(NAMES)


@pytest.fixture
def shards(pg_primary, pg_second):
    """Three databases: two on pg_primary, one on pg_second, with photos."""
    urls = {
        "default": pg_primary.url(pg_primary.create_database()),
        "s2": pg_primary.url(pg_primary.create_database()),
        "s3": pg_second.url(pg_second.create_database()),
    }
    engines = {name: create_engine(url) for name, url in urls.items()}
    for index, (_name, engine) in enumerate(engines.items()):
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(Photo),
                [
                    {"id": i, "title": f"p{i}", "score": None if i % 4 else i}
                    for i in range(index * 10 + 1, index * 10 + 11)
                ],
            )
    yield engines
    for engine in engines.values():
        engine.dispose()
    if not pg_second.is_running():
        pg_second.start()


def session_over(engines, timeout=None):
    factory = get_session_factory(engines, [FanOut()])
    configure_fanout(factory.kw["engines"], workers=4, timeout=timeout)
    return factory()


def test_servers_are_merged_exactly_nulls_last(shards):
    session = session_over(shards)
    rows = session.execute(
        select(Photo.id, Photo.score).order_by(Photo.score, Photo.id.desc()).limit(9)
    ).all()
    # PostgreSQL sorts NULL last in ascending order
    assert [r.score for r in rows] == [4, 8, 12, 16, 20, 24, 28, None, None]
    assert [r.id for r in rows[-2:]] == [30, 29]
    total, mean, count = session.execute(
        select(func.sum(Photo.score), func.avg(Photo.score), func.count())
    ).one()
    assert (total, count) == (112, 30)
    assert mean == pytest.approx(16)
    assert {bind_of(p) for p in session.scalars(select(Photo))} == set(NAMES)
    session.close()


def slow_photos(engine, seconds):
    """Make reading ``photos`` on *engine* take *seconds* (a view that sleeps)."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE photos RENAME TO photo_rows"))
        conn.execute(
            text(
                "CREATE VIEW photos AS SELECT photo_rows.* FROM photo_rows "
                f"CROSS JOIN pg_sleep({seconds:g})"
            )
        )


def sleeping_backends(engine):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND state = 'active' AND query LIKE '%photos%' "
                "AND pid <> pg_backend_pid()"
            )
        ).scalar()


def test_a_slow_database_times_out_naming_it_and_is_cancelled(shards):
    slow_photos(shards["s3"], 30)
    session = session_over(shards, timeout=0.5)
    with pytest.raises(FanoutTimeoutError, match="engine 's3' did not answer") as info:
        session.scalars(select(Photo).order_by(Photo.id)).all()
    assert info.value.engines == ["s3"]
    assert isinstance(info.value, FanoutError)
    # its query was cancelled: nothing still runs there, and no worker holds a
    # connection, so the session rolls back and reads again
    assert sleeping_backends(shards["s3"]) == 0
    session.rollback()
    ids = session.using_bind("s2").scalars(select(Photo.id).order_by(Photo.id)).all()
    assert ids == list(range(11, 21))
    session.close()


def test_a_database_slower_than_the_others_but_in_time_is_waited_for(shards):
    slow_photos(shards["default"], 0.3)
    session = session_over(shards, timeout=20)
    assert len(session.scalars(select(Photo)).all()) == 30
    session.close()


def test_a_stopped_database_fails_the_whole_read_naming_it(shards, pg_second):
    session = session_over(shards)
    pg_second.stop()
    try:
        with pytest.raises(FanoutEngineError, match="engine 's3' failed") as info:
            session.scalars(select(Photo)).all()
        assert info.value.engine == "s3"
        assert isinstance(info.value.__cause__, OperationalError)
    finally:
        pg_second.start()
    session.rollback()
    session.close()


def test_a_database_that_errors_fails_the_whole_read_naming_it(shards):
    with shards["s2"].begin() as conn:
        conn.execute(text("DROP TABLE photos"))
    session = session_over(shards, timeout=20)
    with pytest.raises(FanoutEngineError, match="engine 's2' failed.*photos") as info:
        session.scalars(select(Photo)).all()
    assert info.value.engine == "s2"
    session.rollback()
    session.close()


@pytest.fixture
def pg_world(pg_primary):
    """Three shard databases and one holding the union of their rows."""
    engines = {}
    for name in ("default", "s2", "s3", "union"):
        engines[name] = create_engine(pg_primary.url(pg_primary.create_database()))
        Base.metadata.create_all(engines[name])
    yield engines
    for engine in engines.values():
        engine.dispose()


def pg_load(world, photos):
    for name in ("default", "s2", "s3", "union"):
        with world[name].begin() as conn:
            conn.execute(text("DELETE FROM photos"))
    for photo in photos:
        shard = NAMES[photo["id"] % len(NAMES)]
        for name in (shard, "union"):
            with world[name].begin() as conn:
                conn.execute(insert(Photo), [photo])


PG_AGGREGATES = (func.count(), func.count(Photo.score), func.sum(Photo.score))
PG_AGGREGATES += (func.min(Photo.score), func.max(Photo.score))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    photos=photo_rows,
    descending=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 6)),
    group_by_score=st.booleans(),
)
def test_postgresql_merges_equal_one_database_holding_every_row(
    pg_world, photos, descending, limit, group_by_score
):
    pg_load(pg_world, photos)
    shards = {name: pg_world[name] for name in NAMES}
    fanned = session_over(shards)
    alone = get_session_factory({"default": pg_world["union"]})()
    try:
        # NULLs last ascending, first descending: PostgreSQL's order
        key = Photo.score.desc() if descending else Photo.score
        rows = select(Photo.id, Photo.score).order_by(key, Photo.id).limit(limit)
        assert fanned.execute(rows).all() == alone.execute(rows).all()
        column = Photo.score if group_by_score else Photo.title
        grouped = (
            select(column, *PG_AGGREGATES)
            .group_by(column)
            .having(func.count() > 1)
            .order_by(column.desc() if descending else column)
            .limit(limit)
        )
        assert fanned.execute(grouped).all() == alone.execute(grouped).all()
    finally:
        fanned.close()
        alone.close()
