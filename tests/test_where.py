"""``where_values``: the values a statement's WHERE pins a column to.

Routers that send reads to the engines holding the rows (shards, tenants)
ask it instead of walking SQLAlchemy expressions themselves.
"""

import pytest
from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    delete,
    func,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, aliased, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "where_accounts"
    id = mapped_column(Integer, primary_key=True)
    user_id = mapped_column(Integer)
    name = mapped_column(String(20))


def _callFUT(clause, column=Account.user_id):
    from pyramid_dbrouter import where_values

    return where_values(clause, column)


@pytest.mark.parametrize(
    "statement, expected",
    [
        (select(Account).where(Account.user_id == 5), {5}),
        (select(Account).where(5 == Account.user_id), {5}),
        (select(Account).filter_by(user_id=5), {5}),
        (select(Account).where(Account.user_id.in_([1, 2, 3])), {1, 2, 3}),
        (
            select(Account).where(Account.user_id.in_([1, 2, 3]), Account.name == "x"),
            {1, 2, 3},
        ),
        # AND keeps what its parts agree on
        (
            select(Account)
            .where(Account.user_id.in_([1, 2, 3]))
            .where(Account.user_id == 2),
            {2},
        ),
        (
            select(Account).where(and_(Account.user_id == 1, Account.user_id == 2)),
            set(),
        ),
        # OR: every branch must pin the column
        (
            select(Account).where(or_(Account.user_id == 1, Account.user_id == 4)),
            {1, 4},
        ),
        (update(Account).where(Account.user_id == 7).values(name="y"), {7}),
        (delete(Account).where(Account.user_id == 7), {7}),
        (select(Account.name).where(Account.user_id == 8), {8}),
    ],
)
def test_pinned_values(statement, expected):
    assert _callFUT(statement) == frozenset(expected)


@pytest.mark.parametrize(
    "statement",
    [
        select(Account),
        select(Account).where(Account.name == "x"),
        select(Account).where(Account.id == 9),
        select(Account).where(Account.user_id > 9),
        select(Account).where(Account.user_id != 9),
        select(Account).where(not_(Account.user_id == 9)),
        select(Account).where(or_(Account.user_id == 1, Account.name == "x")),
        select(Account).where(func.abs(Account.user_id) == 3),
        select(Account).where(text("user_id = 3")),
        # a value given only at execution is not known when routing
        select(Account).where(Account.user_id == bindparam("uid")),
        select(Account).where(
            Account.user_id.in_(select(Account.user_id).where(Account.id == 1))
        ),
    ],
)
def test_unknown_is_none(statement):
    assert _callFUT(statement) is None


def test_an_alias_of_the_table_counts_as_the_column():
    alias = aliased(Account)
    assert _callFUT(select(alias).where(alias.user_id == 9)) == {9}


def test_a_table_column_and_none_are_accepted():
    column = Account.__table__.c.user_id
    assert _callFUT(select(Account).where(Account.user_id == 4), column) == {4}
    assert _callFUT(None) is None
    assert _callFUT(Account.user_id == 4) == {4}
