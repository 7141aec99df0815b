"""Aggregates, GROUP BY, HAVING and DISTINCT over a fan-out, merged exactly.

Every property here runs the same statement on the shards (merged) and on a
database holding the union of their rows, and expects the same answer,
NULLs included.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import and_, distinct, func, not_, or_, select

from pyramid_dbrouter import FanoutError
from sample import Photo
from test_fanout import fanout_session, load, photo_rows, union_session, world

try:
    from sqlalchemy.dialects.postgresql import distinct_on
except ImportError:  # SQLAlchemy 2.0: select().distinct(column) says it
    distinct_on = None

__all__ = ["world"]  # the shards and their union, shared with test_fanout

PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck)
)

AGGREGATES = {
    "count(*)": func.count(),
    "count": func.count(Photo.score),
    "sum": func.sum(Photo.score),
    "min": func.min(Photo.score),
    "max": func.max(Photo.score),
    "avg": func.avg(Photo.score),
    "min(title)": func.min(Photo.title),
}
KEYS = {"title": Photo.title, "score": Photo.score}
HAVING = {
    "count > 1": func.count() > 1,
    "sum >= 4 or min is null": or_(
        func.sum(Photo.score) >= 4, func.min(Photo.score).is_(None)
    ),
    "avg > 2": func.avg(Photo.score) > 2,
    "not max < 3": not_(func.max(Photo.score) < 3),
    "count(score) * 2 - 1 >= 3 and max is not null": and_(
        func.count(Photo.score) * 2 - 1 >= 3, func.max(Photo.score).isnot(None)
    ),
}
WHERE = {"all": None, "score > 1": Photo.score > 1, "none": Photo.id < 0}


def both(world, statement):
    merged = fanout_session(world).execute(statement).all()
    expected = union_session(world).execute(statement).all()
    return [tuple(r) for r in merged], [tuple(r) for r in expected]


@PROPERTY
@given(
    photos=photo_rows,
    chosen=st.lists(st.sampled_from(sorted(AGGREGATES)), min_size=1, unique=True),
    where=st.sampled_from(sorted(WHERE)),
)
def test_aggregates_over_every_row(world, photos, chosen, where):
    load(world, photos)
    statement = select(*(AGGREGATES[name] for name in chosen)).select_from(Photo)
    if WHERE[where] is not None:
        statement = statement.where(WHERE[where])
    merged, expected = both(world, statement)
    assert merged == expected


@PROPERTY
@given(
    photos=photo_rows,
    keys=st.lists(st.sampled_from(sorted(KEYS)), min_size=1, unique=True),
    chosen=st.lists(st.sampled_from(sorted(AGGREGATES)), unique=True),
    having=st.one_of(st.none(), st.sampled_from(sorted(HAVING))),
    descending=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 6)),
    offset=st.one_of(st.none(), st.integers(0, 4)),
)
def test_grouped_aggregates_with_having_order_and_limit(
    world, photos, keys, chosen, having, descending, limit, offset
):
    load(world, photos)
    columns = [KEYS[k] for k in keys]
    statement = select(*columns, *(AGGREGATES[name] for name in chosen)).group_by(
        *columns
    )
    if having is not None:
        statement = statement.having(HAVING[having])
    # the group keys are a total order over groups, NULLs as SQLite sorts them
    statement = statement.order_by(*(c.desc() if descending else c for c in columns))
    statement = statement.limit(limit).offset(offset)
    merged, expected = both(world, statement)
    assert merged == expected


@PROPERTY
@given(photos=photo_rows, key=st.sampled_from(sorted(KEYS)))
def test_group_keys_that_are_not_selected(world, photos, key):
    load(world, photos)
    statement = (
        select(func.count(), func.sum(Photo.score))
        .group_by(KEYS[key])
        .order_by(KEYS[key])
    )
    merged, expected = both(world, statement)
    assert merged == expected


@PROPERTY
@given(photos=photo_rows)
def test_order_by_an_aggregate_and_a_label(world, photos):
    load(world, photos)
    statement = (
        select(Photo.title, func.count().label("n"), func.avg(Photo.score))
        .group_by(Photo.title)
        .order_by(func.count().desc(), "title")
        .limit(3)
    )
    merged, expected = both(world, statement)
    assert merged == expected


@PROPERTY
@given(
    photos=photo_rows,
    keys=st.lists(st.sampled_from(sorted(KEYS)), min_size=1, unique=True),
    limit=st.one_of(st.none(), st.integers(0, 6)),
    offset=st.one_of(st.none(), st.integers(0, 4)),
)
def test_distinct_columns(world, photos, keys, limit, offset):
    load(world, photos)
    columns = [KEYS[k] for k in keys]
    statement = (
        select(*columns).distinct().order_by(*columns).limit(limit).offset(offset)
    )
    merged, expected = both(world, statement)
    assert merged == expected


def test_scalar_and_labelled_results(world):
    load(world, [{"id": i, "title": "t", "score": i} for i in range(1, 8)])
    session = fanout_session(world)
    assert session.scalar(select(func.count(Photo.id))) == 7
    row = session.execute(
        select(func.avg(Photo.score).label("mean"), func.max(Photo.score))
    ).one()
    assert (row.mean, row.max) == (4.0, 7)
    assert session.scalars(
        select(Photo.title, func.count()).group_by(Photo.title)
    ).all() == ["t"]


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        (select(func.count(distinct(Photo.title))), r"COUNT\(DISTINCT"),
        (select(func.string_agg(Photo.title, ",")), r"aggregate string_agg\(\)"),
        (
            select(Photo.id, func.row_number().over(order_by=Photo.id)),
            r"window function row_number\(\) OVER",
        ),
        (
            select(func.percentile_cont(0.5).within_group(Photo.score)),
            r"percentile_cont\(\) WITHIN GROUP",
        ),
        (
            select(func.count().filter(Photo.score > 1)),
            r"count\(\) FILTER",
        ),
        (
            select(Photo.title, func.count()),
            "the column photos.title, neither grouped nor aggregated",
        ),
        (select(func.sum(Photo.score) + 1), "expression .* over an aggregate"),
        (
            select(Photo, func.count()).group_by(Photo.id),
            "the entity Photo with an aggregate",
        ),
        (
            select(Photo.title, func.count())
            .group_by(Photo.title)
            .having(func.lower(Photo.title) == "a"),
            "HAVING lower",
        ),
        (
            select(Photo.title).group_by(Photo.title).order_by(Photo.score),
            "ORDER BY photos.score, neither grouped nor aggregated",
        ),
        (
            select(Photo.title).ext(distinct_on(Photo.title))
            if distinct_on is not None
            else select(Photo.title).distinct(Photo.title),
            "DISTINCT ON",
        ),
    ],
)
def test_what_cannot_be_merged_is_named_before_any_sql(world, statement, named):
    session = fanout_session(world)
    with pytest.raises(FanoutError, match=named):
        session.execute(statement)
    assert (
        session.get_transaction() is None or not session.get_transaction()._connections
    )
