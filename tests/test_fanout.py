"""Fan-out reads: one statement, several engines, one answer.

When ``db_for_read`` names several engines, the statement runs on each in
parallel and the rows are merged honouring ORDER BY, LIMIT and OFFSET as if
one database held them all -- which is exactly how these tests check it: the
same query is run on a database holding the union of the rows.
"""

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, event, func, insert, select

from pyramid_dbrouter import FanoutError, bind_of, get_session_factory
from sample import Base, Photo

SHARDS = ("s1", "s2", "s3")


class FanOutPhotos:
    def db_for_read(self, model, **hints):
        return list(SHARDS) if model is Photo else None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three shard engines and one engine holding the union of their rows."""
    root = tmp_path_factory.mktemp("fanout")
    engines = {}
    for name in (*SHARDS, "union"):
        engine = create_engine(f"sqlite:///{root / name}.db")
        Base.metadata.create_all(engine)
        engines[name] = engine
    engines["default"] = engines["union"]
    yield engines
    close_sessions()
    for engine in engines.values():
        engine.dispose()


def load(world, photos):
    """Spread *photos* over the shards (by id), and all of them into union."""
    close_sessions()
    for name in (*SHARDS, "union"):
        with world[name].begin() as conn:
            conn.execute(delete(Photo))
    for photo in photos:
        shard = SHARDS[photo["id"] % len(SHARDS)]
        for name in (shard, "union"):
            with world[name].begin() as conn:
                conn.execute(insert(Photo), [photo])


OPEN = []


def close_sessions():
    """SQLite readers hold a shared lock until their transaction ends."""
    while OPEN:
        OPEN.pop().close()


def fanout_session(world):
    shards = {name: world[name] for name in SHARDS}
    shards["default"] = world["union"]
    session = get_session_factory(shards, [FanOutPhotos()])()
    OPEN.append(session)
    return session


def union_session(world):
    session = get_session_factory({"default": world["union"]})()
    OPEN.append(session)
    return session


photo_rows = st.lists(
    st.fixed_dictionaries(
        {
            "title": st.sampled_from(["ant", "bee", "cat", "dog", "eel"]),
            "score": st.one_of(st.none(), st.integers(0, 5)),
        }
    ),
    max_size=25,
).map(lambda rows: [dict(row, id=i + 1) for i, row in enumerate(rows)])

orderings = st.lists(
    st.tuples(st.sampled_from(["title", "score", "id"]), st.booleans()),
    min_size=1,
    max_size=3,
    unique_by=lambda each: each[0],
)


def order_by(ordering):
    clauses = []
    for column, descending in ordering:
        attribute = getattr(Photo, column)
        clauses.append(attribute.desc() if descending else attribute.asc())
    # a total order: ties between equal keys are otherwise unspecified
    if "id" not in [column for column, _ in ordering]:
        clauses.append(Photo.id.asc())
    return clauses


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    photos=photo_rows,
    ordering=orderings,
    limit=st.one_of(st.none(), st.integers(0, 10)),
    offset=st.one_of(st.none(), st.integers(0, 10)),
)
def test_merged_entities_equal_one_database_holding_every_row(
    world, photos, ordering, limit, offset
):
    load(world, photos)
    statement = select(Photo).order_by(*order_by(ordering)).limit(limit).offset(offset)
    merged = fanout_session(world).scalars(statement).all()
    expected = union_session(world).scalars(statement).all()
    assert [p.id for p in merged] == [p.id for p in expected]
    for photo in merged:
        assert bind_of(photo) == SHARDS[photo.id % len(SHARDS)]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(photos=photo_rows, ordering=orderings, limit=st.integers(1, 6))
def test_merged_columns_equal_one_database_holding_every_row(
    world, photos, ordering, limit
):
    load(world, photos)
    statement = (
        select(Photo.id, Photo.title, Photo.score)
        .order_by(*order_by(ordering))
        .limit(limit)
        .offset(1)
    )
    merged = fanout_session(world).execute(statement).all()
    expected = union_session(world).execute(statement).all()
    assert merged == expected


def test_engines_are_read_in_parallel(world):
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 10)])
    threads = set()

    def note(conn, cursor, statement, *args):
        if statement.startswith("SELECT"):
            threads.add(threading.current_thread().name)

    for name in SHARDS:
        event.listen(world[name], "before_cursor_execute", note)
    try:
        session = fanout_session(world)
        assert len(session.scalars(select(Photo)).all()) == 9
    finally:
        for name in SHARDS:
            event.remove(world[name], "before_cursor_execute", note)
    # the caller reads one engine while workers read the others
    assert threading.current_thread().name in threads
    assert any(t.startswith("dbrouter-fanout") for t in threads)


def test_get_tries_the_engines_in_order(world):
    load(world, [{"id": 2, "title": "two", "score": 1}])
    session = fanout_session(world)
    photo = session.get(Photo, 2)
    assert (photo.title, bind_of(photo)) == ("two", "s3")
    assert session.get(Photo, 99) is None


def test_unmergeable_statements_raise_before_any_sql(world):
    session = fanout_session(world)
    refused = [
        (select(func.count(Photo.id)), "aggregate count"),
        (select(Photo.title).distinct(), "DISTINCT"),
        (
            select(Photo.title, Photo.score).group_by(Photo.title, Photo.score),
            "GROUP BY",
        ),
        (select(Photo).order_by(func.lower(Photo.title)), "ORDER BY"),
    ]
    for statement, why in refused:
        with pytest.raises(FanoutError, match=why) as info:
            session.execute(statement)
        assert "fanout='concat'" in str(info.value)
    assert (
        session.get_transaction() is None or not session.get_transaction()._connections
    )


def test_concat_gives_each_engines_rows_in_turn(world):
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 7)])
    session = fanout_session(world)
    counts = session.execute(
        select(func.count(Photo.id)).execution_options(fanout="concat")
    ).all()
    assert [c for (c,) in counts] == [2, 2, 2]  # s1, s2, s3 in the router's order
    ids = session.scalars(select(Photo.id).execution_options(fanout="concat")).all()
    assert ids == [3, 6, 1, 4, 2, 5]


def test_an_unknown_fanout_mode_is_refused(world):
    with pytest.raises(FanoutError, match="'sideways'"):
        fanout_session(world).execute(
            select(Photo).execution_options(fanout="sideways")
        )


def test_using_bind_reads_one_engine(world):
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 7)])
    session = fanout_session(world)
    ids = session.using_bind("s2").scalars(select(Photo.id).order_by(Photo.id)).all()
    assert ids == [1, 4]
