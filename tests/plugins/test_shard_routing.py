"""Where dbrouter_shard sends writes and reads, on four SQLite shards.

Every test counts the statements each engine received, so that "only that
shard" is something that can fail.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shard_models import (
    Base,
    Comment,
    Post,
    Setting,
    User,
    counting,
    make_app,
    selects,
    sqlite_settings,
)
from sqlalchemy import delete, insert, inspect, select, text, update

from dbrouter_shard import ShardKeyError, ShardRouter, get_shards
from pyramid_dbrouter import (
    UnsafeCommitError,
    bind_of,
    find_router,
    get_engines,
    session_scope,
)

SHARDS = ["shard0", "shard1", "shard2", "shard3"]


@pytest.fixture
def registry(tmp_path):
    return make_app(sqlite_settings(tmp_path, 4))


def rows_on(registry, name, table="shard_users"):
    """What engine *name* holds, read with a connection of its own."""
    with get_engines(registry)[name].connect() as conn:
        return sorted(conn.execute(text(f"SELECT id FROM {table}")).scalars())


def add_users(registry, ids):
    for id_ in ids:
        # one transaction per user: SQLite cannot commit two shards together
        with session_scope(registry) as session:
            session.add(User(id=id_, name=f"user {id_}"))


class TestWrites:
    def test_a_new_object_goes_to_the_shard_of_its_key(self, registry):
        add_users(registry, range(8))
        assert rows_on(registry, "shard0") == [0, 4]
        assert rows_on(registry, "shard1") == [1, 5]
        assert rows_on(registry, "shard3") == [3, 7]
        # init_db made the sharded tables on the shards only (allow_migrate)
        tables = inspect(get_engines(registry)["default"]).get_table_names()
        assert tables == ["shard_settings"]

    def test_a_missing_key_fails_at_flush_before_any_sql(self, registry):
        with counting(registry) as sent:
            with pytest.raises(ShardKeyError) as info:
                with session_scope(registry) as session:
                    session.add(Post(title="no user"))
                    session.flush()
        assert "Post.user_id is None" in str(info.value)
        assert dict(sent) == {}

    def test_children_go_with_their_parent(self, registry):
        shards = get_shards(registry)
        with session_scope(registry) as session:
            user = User(id=6, name="six")
            post = Post(id=shards.new_id(6), user=user, title="hello")
            post.comments.append(Comment(body="first"))
            session.add(user)
            post_id = post.id
        assert rows_on(registry, "shard2") == [6]
        assert rows_on(registry, "shard2", "shard_posts") == [post_id]
        assert rows_on(registry, "shard2", "shard_comments") == [1]
        for other in ("shard0", "shard1", "shard3"):
            assert rows_on(registry, other, "shard_comments") == []

    def test_models_without_a_key_use_the_rest_of_the_chain(self, registry):
        with session_scope(registry) as session:
            session.add(Setting(value="x"))
        with get_engines(registry)["default"].connect() as conn:
            assert conn.execute(text("SELECT value FROM shard_settings")).all() == [
                ("x",)
            ]

    @pytest.mark.parametrize(
        "where",
        [User.name == "user 1", User.id.in_([1, 2])],
        ids=["unpinned", "pinned to two shards"],
    )
    def test_a_bulk_update_on_several_sqlite_shards_is_refused_before_any_sql(
        self, registry, where
    ):
        add_users(registry, range(4))
        with counting(registry) as sent:
            with pytest.raises(UnsafeCommitError, match="nothing was run"):
                with session_scope(registry) as session:
                    session.execute(update(User).where(where).values(name="x"))
        # SQLite files cannot commit together: not one statement was sent
        assert dict(sent) == {}
        for name, ids in zip(SHARDS, ([0], [1], [2], [3]), strict=True):
            assert rows_on(registry, name) == ids
        with session_scope(registry) as session:
            names = session.scalars(select(User.name)).all()
        assert sorted(names) == ["user 0", "user 1", "user 2", "user 3"]

    def test_the_router_answers_every_shard_for_an_unpinned_bulk_write(self, registry):
        router = find_router(registry, ShardRouter)
        for statement in (
            update(User).where(User.name == "x").values(name="y"),
            delete(User).where(User.name == "x"),
            delete(Comment),  # no key of its own: on every shard
        ):
            model = statement.table.entity_namespace
            assert router.db_for_write(model, clause=statement) == SHARDS
        pinned = update(User).where(User.id.in_([1, 5, 2])).values(name="y")
        assert router.db_for_write(User, clause=pinned) == ["shard1", "shard2"]
        with pytest.raises(ShardKeyError, match="belongs to no shard"):
            router.db_for_write(User, clause=insert(User).values(name="no id"))

    def test_request_shards(self, registry):
        from pyramid.scripting import prepare

        env = prepare(registry=registry)
        try:
            assert env["request"].shards is get_shards(registry)
            assert env["request"].shards.shard_for(5) == "shard1"
        finally:
            env["closer"]()

    def test_a_bulk_update_pinned_to_one_shard_runs_there(self, registry):
        add_users(registry, range(8))
        with counting(registry) as sent:
            with session_scope(registry) as session:
                session.execute(
                    update(User).where(User.id.in_([1, 5])).values(name="x")
                )
        assert [n for n, s in sent.items() if any("UPDATE" in x for x in s)] == [
            "shard1"
        ]


class TestReads:
    @pytest.fixture
    def users(self, registry):
        add_users(registry, range(20))
        return registry

    def test_a_key_pinned_with_eq_reads_one_shard(self, users):
        with counting(users) as sent:
            with session_scope(users) as session:
                found = [
                    u.id for u in session.scalars(select(User).where(User.id == 6))
                ]
        assert found == [6]
        assert list(selects(sent)) == ["shard2"]
        assert len(selects(sent)["shard2"]) == 1

    def test_in_over_three_keys_reads_at_most_three_shards(self, users):
        with counting(users) as sent:
            with session_scope(users) as session:
                found = session.scalars(
                    select(User.id).where(User.id.in_([1, 2, 5]), User.name != "")
                ).all()
        assert sorted(found) == [1, 2, 5]
        assert sorted(selects(sent)) == ["shard1", "shard2"]

    def test_get_by_the_shard_key_reads_one_shard(self, users):
        with counting(users) as sent:
            with session_scope(users) as session:
                user = session.get(User, 7)
                assert bind_of(user) == "shard3"
        assert list(selects(sent)) == ["shard3"]

    def test_get_by_an_id_that_carries_its_bucket(self, users):
        shards = get_shards(users)
        post_id = shards.new_id(9)
        with session_scope(users) as session:
            session.add(Post(id=post_id, user_id=9, title="nine"))
        with counting(users) as sent:
            with session_scope(users) as session:
                assert session.get(Post, post_id).title == "nine"
        assert list(selects(sent)) == ["shard1"]

    def test_an_unpinned_read_reads_every_shard_ordered_and_limited(self, users):
        with counting(users) as sent:
            with session_scope(users) as session:
                found = session.scalars(
                    select(User).order_by(User.id.desc()).limit(5)
                ).all()
                found = [u.id for u in found]
        assert found == [19, 18, 17, 16, 15]
        assert sorted(selects(sent)) == SHARDS

    def test_a_lazy_load_stays_on_the_parents_shard(self, users):
        shards = get_shards(users)
        with session_scope(users) as session:
            session.add(Post(id=shards.new_id(3), user_id=3, title="three"))
        with session_scope(users) as session:
            user = session.get(User, 3)
            with counting(users) as sent:
                assert [p.title for p in user.posts] == ["three"]
        assert list(selects(sent)) == ["shard3"]

    def test_using_bind_shard_for_runs_a_block_on_one_shard(self, users):
        with counting(users) as sent:
            with session_scope(users) as session:
                shards = get_shards(session)
                with session.using_bind(shards.shard_for(42)):
                    count = len(session.scalars(select(User)).all())
        assert count == 5  # 2, 6, 10, 14, 18
        assert list(selects(sent)) == ["shard2"]


def test_on_missing_key_error_refuses_a_scatter(tmp_path):
    registry = make_app(
        sqlite_settings(tmp_path, 4, **{"dbrouter.shard.on_missing_key": "error"})
    )
    add_users(registry, [1, 2])
    with counting(registry) as sent:
        with session_scope(registry) as session:
            with pytest.raises(ShardKeyError, match="does not pin its shard key 'id'"):
                session.scalars(select(User).where(User.name == "user 1")).all()
            assert session.scalars(select(User).where(User.id == 1)).one().id == 1
    assert list(selects(sent)) == ["shard1"]


def test_on_missing_key_error_refuses_an_unpinned_bulk_write(tmp_path):
    registry = make_app(
        sqlite_settings(tmp_path, 4, **{"dbrouter.shard.on_missing_key": "error"})
    )
    add_users(registry, [1, 2])
    with counting(registry) as sent:
        with session_scope(registry) as session:
            with pytest.raises(ShardKeyError) as info:
                session.execute(update(User).where(User.name == "x").values(name="y"))
            with pytest.raises(ShardKeyError, match="bulk DELETE of User"):
                session.execute(delete(User).where(User.name == "x"))
            session.execute(update(User).where(User.id == 1).values(name="one"))
    assert str(info.value).startswith(
        "a bulk UPDATE of User does not pin its shard key 'id' and would run on "
        "every shard (shard0, shard1, shard2, shard3); dbrouter.shard.on_missing_key "
        "= error refuses it."
    )
    assert {n: [s.split()[0] for s in sql] for n, sql in sent.items()} == {
        "shard1": ["UPDATE"]
    }
    assert rows_on(registry, "shard1") == [1]


@pytest.fixture(scope="module")
def union_app(tmp_path_factory):
    """Four shards, and one database holding every row: the reference."""
    path = tmp_path_factory.mktemp("union")
    settings = sqlite_settings(path, 4)
    settings["sqlalchemy.union.url"] = f"sqlite:///{path / 'union.db'}"
    registry = make_app(settings)
    Base.metadata.create_all(get_engines(registry)["union"])
    return registry


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    names=st.lists(st.sampled_from("abcde"), min_size=0, max_size=24),
    descending=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 30)),
    offset=st.integers(0, 5),
)
def test_a_fanout_answers_as_one_database_would(
    union_app, names, descending, limit, offset
):
    for name in SHARDS + ["union"]:
        with session_scope(union_app) as session:
            session.using_bind(name).execute(text("DELETE FROM shard_users"))
    rows = [{"id": i, "name": n} for i, n in enumerate(names)]
    for name in SHARDS + ["union"]:
        with session_scope(union_app) as session:
            mine = [r for r in rows if name == "union" or f"shard{r['id'] % 4}" == name]
            if mine:
                session.using_bind(name).execute(User.__table__.insert(), mine)
    order = User.name.desc() if descending else User.name
    statement = (
        select(User.id, User.name).order_by(order, User.id).limit(limit).offset(offset)
    )
    with session_scope(union_app) as session:
        merged = session.execute(statement).all()
        expected = session.using_bind("union").execute(statement).all()
    assert merged == expected


def test_explain_shows_where_a_bulk_write_goes(registry):
    from pyramid_dbrouter.cli import explain, router_names
    from pyramid_dbrouter.config import get_state

    state = get_state(registry)
    lines = explain(User, router_names(registry, state), state)
    (bulk,) = [line for line in lines if line.lstrip().startswith("bulk writes")]
    assert bulk.split() == [
        "bulk",
        "writes",
        "each",
        "of",
        "shard0,",
        "shard1,",
        "shard2,",
        "shard3",
        "<-",
        "router",
        "dbrouter_shard",
    ]
    # a model every router abstains on has no such row: its writes say it all
    assert not [line for line in explain(Setting, [], state) if "bulk" in line]
