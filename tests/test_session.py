"""RoutingSession: where statements, ``get()`` and objects go.

The precedence, for statements, ``get()`` and new objects, is
``using_bind`` > the model's ``__bind_key__`` > routers > ``default``; an
object that was loaded always stays with the engine it came from.
"""

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import joinedload, selectinload, subqueryload

from pyramid_dbrouter import (
    CrossDatabaseRelationError,
    RouterAnswerError,
    UnknownBindError,
    UnsafeCommitError,
    bind_of,
    get_session_factory,
)
from sample import (
    Album,
    AuthRouter,
    EverythingTo,
    LegacyInvoice,
    Photo,
    Tag,
    User,
    rows,
)


@pytest.fixture
def engines(sqlite_engines):
    return sqlite_engines("default", "a", "b", "legacy", "auth_db")


def make_session(engines, *routers):
    return get_session_factory(engines, list(routers))()


class TestPrecedence:
    def test_default_when_nothing_decides(self, engines, db_path):
        session = make_session(engines)
        album = Album(id=1, title="default")
        session.add(album)
        session.commit()
        assert bind_of(album) == "default"
        assert rows(db_path("default"), "select title from albums") == [("default",)]

    def test_routers_decide_before_default(self, engines, db_path):
        session = make_session(engines, EverythingTo("a"))
        session.add(Album(id=1, title="routed"))
        session.commit()
        assert rows(db_path("a"), "select title from albums") == [("routed",)]
        assert rows(db_path("default"), "select title from albums") == []
        assert session.scalars(select(Album)).one().title == "routed"

    def test_bind_key_beats_routers(self, engines, db_path):
        session = make_session(engines, EverythingTo("a"))
        invoice = LegacyInvoice(id=1, amount=5)
        session.add(invoice)
        session.commit()
        assert bind_of(invoice) == "legacy"
        assert rows(db_path("legacy"), "select amount from legacy_invoices") == [(5,)]
        assert session.get(LegacyInvoice, 1) is invoice
        assert session.scalars(select(LegacyInvoice)).one() is invoice

    def test_using_bind_beats_bind_key_and_routers(self, engines, db_path):
        session = make_session(engines, EverythingTo("a"))
        with session.using_bind("b"):
            session.add(LegacyInvoice(id=7, amount=70))
            session.add(Album(id=7, title="pinned"))
        session.commit()
        assert rows(db_path("b"), "select amount from legacy_invoices") == [(70,)]
        assert rows(db_path("b"), "select title from albums") == [("pinned",)]
        assert session.using_bind("b").get(LegacyInvoice, 7).amount == 70
        assert session.get(LegacyInvoice, 7) is None  # not on "legacy"

    def test_first_router_with_an_opinion_wins(self, engines, db_path):
        session = make_session(engines, AuthRouter(), EverythingTo("b"))
        session.add_all([User(id=1, name="ann"), Album(id=1, title="b's")])
        with pytest.raises(UnsafeCommitError, match="'auth_db', 'b'"):
            # two SQLite engines wrote: refused at commit, see test_transactions
            session.commit()
        session.rollback()
        session = make_session(engines, AuthRouter(), EverythingTo("b"))
        session.add(User(id=1, name="ann"))
        session.commit()
        assert rows(db_path("auth_db"), "select name from users") == [("ann",)]

    def test_routers_receive_the_instance_and_request_hints(self, engines):
        seen = []

        class Spy:
            def db_for_read(self, model, **hints):
                seen.append(
                    (model, hints["instance"], hints["clause"], hints["request"])
                )

            def db_for_write(self, model, **hints):
                seen.append(
                    (model, hints["instance"], hints["clause"], hints["request"])
                )

        request = object()
        session = get_session_factory(engines, [Spy()])(info={"request": request})
        album = Album(id=1, title="x")
        session.add(album)
        session.flush()
        statement = select(Album)
        session.scalars(statement).all()
        assert seen == [
            (Album, album, None, request),
            (Album, None, statement, request),
        ]


class TestIdentity:
    def test_same_primary_key_in_two_engines_is_two_objects(self, engines):
        session = make_session(engines)
        session.using_bind("a").add(Album(id=1, title="in a"))
        session.using_bind("b").add(Album(id=1, title="in b"))
        session.flush()
        in_a = session.using_bind("a").get(Album, 1)
        in_b = session.using_bind("b").get(Album, 1)
        assert in_a is not in_b
        assert (in_a.title, bind_of(in_a)) == ("in a", "a")
        assert (in_b.title, bind_of(in_b)) == ("in b", "b")
        both = session.using_bind("a").scalars(select(Album)).all()
        assert both == [in_a]

    def test_bind_of_a_new_object_is_its_pin_or_none(self, engines):
        session = make_session(engines)
        loose, pinned = Album(id=1, title="x"), Album(id=2, title="y")
        session.add(loose)
        session.using_bind("default").add(pinned)
        assert bind_of(loose) is None
        assert bind_of(pinned) == "default"
        session.flush()
        assert bind_of(loose) == bind_of(pinned) == "default"


class TestObjectsStayWithTheirEngine:
    def test_writes_go_back_where_the_object_came_from(self, engines, db_path):
        session = make_session(engines)
        session.using_bind("a").add(Album(id=1, title="old"))
        session.commit()
        album = session.using_bind("a").get(Album, 1)
        with session.using_bind("b"):  # a pin does not move a loaded object
            album.title = "new"
            session.flush()
        session.commit()
        assert rows(db_path("a"), "select title from albums") == [("new",)]
        assert rows(db_path("b"), "select title from albums") == []

    def test_deletes_go_back_where_the_object_came_from(self, engines, db_path):
        session = make_session(engines)
        session.using_bind("a").add(Album(id=1, title="gone"))
        session.commit()
        session.using_bind("default").add(Album(id=1, title="kept"))
        session.commit()
        session.delete(session.using_bind("a").get(Album, 1))
        session.commit()
        assert rows(db_path("a"), "select count(*) from albums") == [(0,)]
        assert rows(db_path("default"), "select title from albums") == [("kept",)]

    def test_lazy_loads_and_refreshes_use_the_parents_engine(self, engines, db_path):
        session = make_session(engines)
        with session.using_bind("b"):
            session.add(Album(id=1, title="b", photos=[Photo(id=1, title="in b")]))
        session.commit()
        session = make_session(engines, EverythingTo("a"))  # routers say "a"
        album = session.using_bind("b").get(Album, 1)
        photo = album.photos[0]  # lazy one-to-many
        assert (photo.title, bind_of(photo)) == ("in b", "b")
        assert photo.album is album  # lazy many-to-one, from the identity map
        session.expire(photo)
        assert photo.title == "in b"  # the refresh went to "b", not "a"
        session.refresh(album)
        assert bind_of(album) == "b"

    @pytest.mark.parametrize("engine", ["b", "default"])
    @pytest.mark.parametrize("loader", [selectinload, joinedload, subqueryload])
    def test_eager_loads_use_the_parents_engine(self, engines, engine, loader):
        for name in ("a", engine):
            session = make_session(engines)
            with session.using_bind(name):
                session.add(Album(id=1, title=name, photos=[Photo(id=1, title=name)]))
            session.commit()
        session = make_session(engines, EverythingTo("a"))  # routers say "a"
        statement = select(Album).options(loader(Album.photos))
        album = session.using_bind(engine).scalars(statement).unique().one()
        assert "photos" in album.__dict__  # loaded eagerly, not lazily
        assert [(p.title, bind_of(p)) for p in album.photos] == [(engine, engine)]

    def test_new_objects_related_to_a_loaded_one_go_with_it(self, engines, db_path):
        session = make_session(engines)
        session.using_bind("b").add(Album(id=1, title="b"))
        session.commit()
        album = session.using_bind("b").get(Album, 1)
        album.photos.append(Photo(id=5, title="cascaded"))
        session.commit()
        assert rows(db_path("b"), "select title, album_id from photos") == [
            ("cascaded", 1)
        ]

    def test_association_rows_go_with_the_objects_they_link(self, engines, db_path):
        session = make_session(engines)
        with session.using_bind("a"):
            session.add(Album(id=1, title="a", tags=[Tag(id=1, name="sea")]))
        session.commit()
        assert rows(db_path("a"), "select album_id, tag_id from album_tags") == [(1, 1)]
        assert rows(db_path("default"), "select count(*) from album_tags") == [(0,)]
        album = session.using_bind("a").get(Album, 1)
        assert [t.name for t in album.tags] == ["sea"]


class TestRelations:
    def test_objects_of_two_engines_cannot_be_related_by_default(
        self, engines, db_path
    ):
        session = make_session(engines)
        session.using_bind("a").add(Album(id=1, title="a"))
        session.commit()
        album = session.using_bind("a").get(Album, 1)
        photo = Photo(id=1, title="elsewhere")
        session.using_bind("b").add(photo)
        photo.album = album
        with pytest.raises(CrossDatabaseRelationError, match="'b'.*'a'"):
            session.flush()
        session.rollback()
        assert rows(db_path("b"), "select count(*) from photos") == [(0,)]

    def test_a_router_may_allow_a_relation_across_engines(self, engines, db_path):
        class AllowAll:
            def allow_relation(self, obj1, obj2, **hints):
                return True

        session = make_session(engines, AllowAll())
        album = Album(id=3, title="in a")
        session.using_bind("a").add(album)
        photo = Photo(id=1, title="in b", album=album)
        session.using_bind("b").add(photo)
        session.flush()  # "a" first: the photo refers to the album
        assert photo.album_id == 3
        session.rollback()


class TestBulkWrites:
    def test_orm_bulk_insert_and_update_are_routed_as_writes(self, engines, db_path):
        session = make_session(engines, EverythingTo("a"))
        session.execute(
            insert(Album), [{"id": 1, "title": "x"}, {"id": 2, "title": "y"}]
        )
        session.execute(update(Album).where(Album.id == 2).values(title="z"))
        session.execute(
            update(Album), [{"id": 1, "title": "by pk"}]
        )  # bulk update by primary key
        session.commit()
        assert rows(db_path("a"), "select id, title from albums order by id") == [
            (1, "by pk"),
            (2, "z"),
        ]
        assert rows(db_path("default"), "select count(*) from albums") == [(0,)]

    def test_bulk_insert_honours_using_bind(self, engines, db_path):
        session = make_session(engines)
        session.using_bind("b").execute(insert(Album), [{"id": 1, "title": "b"}])
        session.commit()
        assert rows(db_path("b"), "select title from albums") == [("b",)]


class TestUsingBind:
    def test_handle_methods_act_on_the_same_session(self, engines):
        session = make_session(engines)
        handle = session.using_bind("a")
        album = Album(id=1, title="x")
        handle.add(album)
        assert album in session
        handle.flush()
        assert handle.get(Album, 1) is album
        assert handle.scalars(select(Album)).all() == [album]
        assert handle.scalar(select(Album.title)) == "x"
        assert handle.execute(select(Album.id)).all() == [(1,)]
        assert handle.query(Album).all() == [album]
        assert session.query(Album).all() == []  # the query outside the pin
        handle.delete(album)
        handle.flush()
        assert handle.get(Album, 1) is None

    def test_blocks_nest_and_the_innermost_wins(self, engines):
        session = make_session(engines)
        with session.using_bind("a"):
            session.add(Album(id=1, title="a"))
            with session.using_bind("b"):
                session.add(Album(id=1, title="b"))
                session.flush()
                assert session.scalars(select(Album.title)).all() == ["b"]
            assert session.scalars(select(Album.title)).all() == ["a"]
        assert session.scalars(select(Album.title)).all() == []

    def test_the_pin_is_released_when_the_block_raises(self, engines):
        session = make_session(engines)
        with pytest.raises(LookupError), session.using_bind("a"):
            raise LookupError("inside the block")
        session.add(Album(id=1, title="x"))
        session.flush()
        assert bind_of(session.get(Album, 1)) == "default"

    def test_no_new_session_or_transaction(self, engines):
        session = make_session(engines)
        session.add(Album(id=1, title="x"))
        session.using_bind("a").scalars(select(Album)).all()
        transaction = session.get_transaction()
        with session.using_bind("b"):
            assert session.get_transaction() is transaction


class TestBadInput:
    def test_unknown_engine_from_using_bind(self, engines):
        session = make_session(engines)
        with pytest.raises(UnknownBindError) as info:
            session.using_bind("archive")
        message = str(info.value)
        assert "'archive'" in message and "using_bind" in message
        for name in ("default", "a", "b", "legacy", "auth_db"):
            assert repr(name) in message

    def test_unknown_engine_from_a_router(self, engines, db_path):
        session = make_session(engines, EverythingTo("replica9"))
        with pytest.raises(UnknownBindError, match="'replica9'.*router"):
            session.scalars(select(Album)).all()
        session.add(Album(id=1, title="x"))
        with pytest.raises(UnknownBindError, match="'replica9'"):
            session.commit()
        session.rollback()
        assert rows(db_path("default"), "select count(*) from albums") == [(0,)]

    def test_a_router_answering_something_else_than_a_name(self, engines):
        class Confused:
            def db_for_read(self, model, **hints):
                return 42

        session = make_session(engines, Confused())
        with pytest.raises(
            RouterAnswerError, match=r"Confused\.db_for_read returned 42"
        ):
            session.scalars(select(Album)).all()


class TestReflectedTables:
    """Flask-style binds: tables reflected from a legacy database stay there."""

    @pytest.fixture
    def legacy(self, sqlite_engines):
        engines = sqlite_engines("default", "legacy", create=False)
        with engines["legacy"].begin() as conn:
            conn.exec_driver_sql(
                "create table orders (id integer primary key, total int)"
            )
            conn.exec_driver_sql("insert into orders values (1, 40), (2, 2)")
        return engines

    def test_automapped_classes_with_a_bind_key(self, legacy, db_path):
        from sqlalchemy.ext.automap import automap_base

        LegacyBase = automap_base()
        LegacyBase.__bind_key__ = "legacy"
        LegacyBase.prepare(autoload_with=legacy["legacy"])
        Order = LegacyBase.classes.orders
        session = make_session(legacy)
        assert [o.total for o in session.scalars(select(Order).order_by(Order.id))] == [
            40,
            2,
        ]
        session.get(Order, 2).total = 3
        session.add(Order(id=3, total=7))
        session.commit()
        assert rows(db_path("legacy"), "select total from orders order by id") == [
            (40,),
            (3,),
            (7,),
        ]

    def test_core_statements_on_a_table_with_a_bind_key(self, legacy, db_path):
        from sqlalchemy import MetaData, Table

        orders = Table(
            "orders",
            MetaData(),
            autoload_with=legacy["legacy"],
            info={"bind_key": "legacy"},
        )
        session = make_session(legacy)
        assert session.scalar(select(orders.c.total).where(orders.c.id == 1)) == 40
        session.execute(insert(orders).values(id=9, total=90))
        session.commit()
        assert rows(db_path("legacy"), "select total from orders where id = 9") == [
            (90,)
        ]
