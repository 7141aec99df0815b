"""Fan-out reads: one statement, several engines, one answer.

When ``db_for_read`` names several engines, the statement runs on each in
parallel and the rows are merged honouring ORDER BY, LIMIT and OFFSET as if
one database held them all -- which is exactly how these tests check it: the
same query is run on a database holding the union of the rows.
"""

import threading
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, event, func, insert, select

from pyramid_dbrouter import FanoutError, bind_of, get_session_factory
from pyramid_dbrouter.fanout import configure_fanout
from sample import Base, Photo

SHARDS = ("s1", "s2", "s3")


class FanOutPhotos:
    def db_for_read(self, model, **hints):
        # textual and model-less statements too, so that every refusal shows
        return list(SHARDS) if model in (Photo, None) else None


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


def threads_reading(world, session, statement):
    """The names of the threads that ran *statement*'s SELECTs."""
    threads = set()

    def note(conn, cursor, statement, *args):
        if statement.startswith("SELECT"):
            threads.add(threading.current_thread().name)

    for name in SHARDS:
        event.listen(world[name], "before_cursor_execute", note)
    try:
        rows = session.scalars(statement).all()
    finally:
        for name in SHARDS:
            event.remove(world[name], "before_cursor_execute", note)
    return rows, threads


def test_sqlite_engines_are_read_in_the_callers_thread(world):
    # no network wait to overlap: a worker would only add a hand-over
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 10)])
    rows, threads = threads_reading(world, fanout_session(world), select(Photo))
    assert len(rows) == 9
    assert threads == {threading.current_thread().name}


def test_parallel_always_reads_every_engine_in_the_pool(world):
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 10)])
    session = fanout_session(world)
    configure_fanout(session.engines, workers=2, parallel="always")
    rows, threads = threads_reading(world, session, select(Photo))
    assert len(rows) == 9
    assert threads and all(t.startswith("dbrouter-fanout") for t in threads)
    # the pool is bounded, and its threads are reused by the next read
    before = {t.ident for t in threading.enumerate()}
    _rows, again = threads_reading(world, session, select(Photo))
    assert len(again | threads) <= 2
    assert {t.ident for t in threading.enumerate()} == before


def test_get_tries_the_engines_in_order(world):
    load(world, [{"id": 2, "title": "two", "score": 1}])
    session = fanout_session(world)
    photo = session.get(Photo, 2)
    assert (photo.title, bind_of(photo)) == ("two", "s3")
    assert session.get(Photo, 99) is None


def test_order_by_an_expression_that_is_not_selected_raises_before_any_sql(world):
    session = fanout_session(world)
    with pytest.raises(FanoutError, match="ORDER BY lower") as info:
        session.execute(select(Photo).order_by(func.lower(Photo.title)))
    assert "fanout='concat'" in str(info.value)
    assert (
        session.get_transaction() is None or not session.get_transaction()._connections
    )


@contextmanager
def selects_sent(world):
    """A list that grows with each SELECT sent to a shard inside the block."""
    sent = []

    def note(conn, cursor, statement, *args):
        if statement.startswith("SELECT"):
            sent.append(statement)

    for name in SHARDS:
        event.listen(world[name], "before_cursor_execute", note)
    try:
        yield sent
    finally:
        for name in SHARDS:
            event.remove(world[name], "before_cursor_execute", note)


def test_get_looks_in_every_engines_identity_map_before_any_sql(world):
    load(world, [{"id": i, "title": f"p{i}", "score": i} for i in range(1, 7)])
    session = fanout_session(world)
    loaded = {p.id: p for p in session.scalars(select(Photo))}
    with selects_sent(world) as sent:
        # id 2 lives in s3, the last engine the router names
        assert session.get(Photo, 2) is loaded[2]
        assert session.get(Photo, {"id": 3}) is loaded[3]
        assert sent == []
        # an object not loaded yet costs one SELECT per engine until found
        session.expunge(loaded[5])
        assert session.get(Photo, 5).id == 5
        assert len(sent) == 3  # s1, s2, then s3 (5 % 3 == 2)
        del sent[:]
        # populate_existing asks the database, as Session.get() does
        session.get(Photo, 4, populate_existing=True)
        assert len(sent) == 2


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


def test_concat_with_yield_per_streams_engine_after_engine(world):
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 31)])
    session = fanout_session(world)
    statement = (
        select(Photo).order_by(Photo.id).execution_options(fanout="concat", yield_per=2)
    )
    result = session.scalars(statement)
    first = [p.id for p in result.fetchmany(2)]
    assert first == [3, 6]  # s1's first batch; nothing else was built yet
    assert len(session.identity_map) <= 2 * len(SHARDS)
    rest = [p.id for p in result]
    assert sorted(first + rest) == list(range(1, 31))


def test_merge_with_yield_per_streams_in_order(world):
    load(world, [{"id": i, "title": "t", "score": i % 4} for i in range(1, 31)])
    session = fanout_session(world)
    statement = (
        select(Photo).order_by(Photo.score, Photo.id).execution_options(yield_per=3)
    )
    result = session.scalars(statement)
    head = result.fetchmany(4)
    assert len(session.identity_map) < 30  # not all built at once
    rows = head + list(result)
    expected = union_session(world).scalars(statement).all()
    assert [(p.score, p.id) for p in rows] == [(p.score, p.id) for p in expected]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("dbrouter.fanout_workers", "0", "not a positive whole number"),
        ("dbrouter.fanout_workers", "many", "not a positive whole number"),
        ("dbrouter.fanout_timeout", "-1", "not a positive number of seconds"),
        ("dbrouter.fanout_timeout", "soon", "not a positive number of seconds"),
        ("dbrouter.fanout_parallel", "sometimes", "not one of auto, always, never"),
    ],
)
def test_fanout_settings_are_checked_at_start_up(key, value, expected):
    from pyramid.exceptions import ConfigurationError

    from pyramid_dbrouter.settings import parse_settings

    with pytest.raises(ConfigurationError, match=f"{key}: {value!r} .*{expected}"):
        parse_settings({"sqlalchemy.url": "sqlite://", key: value})


def test_fanout_settings_reach_the_pool():
    from pyramid_dbrouter.config import build_from_settings
    from pyramid_dbrouter.fanout import fanout_pool

    state = build_from_settings(
        {
            "sqlalchemy.url": "sqlite://",
            "dbrouter.fanout_workers": "3",
            "dbrouter.fanout_timeout": "2.5",
            "dbrouter.fanout_parallel": "never",
        }
    )
    pool = fanout_pool(state.engines)
    assert (pool.workers, pool.timeout, pool.parallel) == (3, 2.5, "never")
    defaults = fanout_pool(build_from_settings({"sqlalchemy.url": "sqlite://"}).engines)
    assert (defaults.workers, defaults.timeout, defaults.parallel) == (8, None, "auto")


def test_a_failure_zope_sqlalchemy_would_retry_stays_retryable():
    import psycopg
    from pyramid_retry import IRetryableError
    from sqlalchemy.exc import DBAPIError

    from pyramid_dbrouter.fanout import FanoutEngineError, _engine_failed

    conflict = psycopg.errors.SerializationFailure("could not serialize access")
    error = _engine_failed(
        "s2", ["s1", "s2"], DBAPIError.instance("SELECT 1", {}, conflict, psycopg.Error)
    )
    assert isinstance(error, FanoutEngineError)
    assert "engine 's2' failed" in str(error)
    assert IRetryableError.providedBy(error)
    broken = psycopg.errors.UndefinedTable("no table photos")
    error = _engine_failed(
        "s1", ["s1", "s2"], DBAPIError.instance("SELECT 1", {}, broken, psycopg.Error)
    )
    assert not IRetryableError.providedBy(error)


def test_fanout_unique_keeps_the_first_copy_of_a_row_per_group(world):
    """s1 and s2 as the two homes of one set of rows (a row being moved is
    in both), s3 another set whose ids repeat theirs."""
    close_sessions()
    for name, rows in {"s1": [1, 2], "s2": [2, 3], "s3": [1, 2, 3]}.items():
        with world[name].begin() as conn:
            conn.execute(delete(Photo))
            conn.execute(insert(Photo), [{"id": i, "title": name} for i in rows])
    session = fanout_session(world)
    statement = select(Photo).order_by(Photo.id)

    def pair(name):
        return "s1+s2" if name in ("s1", "s2") else name

    found = session.scalars(statement.execution_options(fanout_unique=pair)).all()
    assert sorted((p.id, p.title) for p in found) == [
        (1, "s1"), (1, "s3"), (2, "s1"), (2, "s3"), (3, "s2"), (3, "s3")
    ]  # fmt: skip
    # "first": one row per identity over every engine
    found = session.scalars(statement.execution_options(fanout_unique="first"))
    assert [(p.id, p.title) for p in found] == [(1, "s1"), (2, "s1"), (3, "s2")]
    # groups that cannot repeat: nothing compared, and aggregates are exact
    count = select(func.count(Photo.id)).execution_options(fanout_unique=str)
    assert session.scalar(count) == 7
    with pytest.raises(FanoutError, match="fanout_unique"):
        session.scalar(count.execution_options(fanout_unique=pair))
    with pytest.raises(FanoutError, match="a callable"):
        session.scalars(statement.execution_options(fanout_unique="last")).all()
