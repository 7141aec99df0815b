"""Which engine, and why: one decision, for every caller, with its rule.

``session.route_of(obj)`` and ``pyramid_dbrouter.routing.route(...)`` answer
a :class:`~pyramid_dbrouter.routing.Route`: the engine and the rule that
chose it.  The same reason is what an unknown engine's error names, and what
``dbrouter show --explain`` prints.
"""

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pyramid_dbrouter import RouterChain, UnknownBindError, get_session_factory
from pyramid_dbrouter.routing import Route, migration, route
from sample import Album, AuthRouter, EverythingTo, LegacyInvoice, Photo, User


@pytest.fixture
def engines(sqlite_engines):
    return sqlite_engines("default", "a", "legacy", "auth_db")


def make_session(engines, *routers):
    return get_session_factory(engines, list(routers))()


def decided(route_):
    return route_.name, route_.reason


class TestEachRule:
    def test_using_bind(self, engines):
        session = make_session(engines, AuthRouter())
        with session.using_bind("a"):
            user = User(id=1, name="pinned")
            session.add(user)
        assert decided(session.route_of(user)) == ("a", "using_bind")
        session.flush()
        assert decided(session.route_of(user)) == ("a", "using_bind")

    def test_bind_key_of_the_model(self, engines):
        session = make_session(engines, EverythingTo("a"))
        invoice = LegacyInvoice(id=1, amount=3)
        session.add(invoice)
        session.flush()
        assert decided(session.route_of(invoice)) == (
            "legacy",
            "__bind_key__ of LegacyInvoice",
        )

    def test_bind_key_of_a_table(self):
        table = Table(
            "ledger", MetaData(), Column("id", Integer), info={"bind_key": "b"}
        )
        routed = route(
            RouterChain([EverythingTo("a")]), None, False, clause=select(table)
        )
        assert decided(routed) == ("b", 'Table.info["bind_key"] of ledger')

    def test_a_router(self, engines):
        session = make_session(engines, AuthRouter())
        user = User(id=1, name="routed")
        session.add(user)
        session.flush()
        assert decided(session.route_of(user)) == ("auth_db", "router AuthRouter")

    def test_related_to_a_loaded_object(self, engines):
        with engines["a"].begin() as conn:
            conn.execute(Album.__table__.insert().values(id=3, title="in a"))
        session = make_session(engines)
        album = session.using_bind("a").get(Album, 3)
        photo = Photo(id=1, title="follows its album", album=album)
        session.add(photo)
        session.flush()
        assert decided(session.route_of(photo)) == ("a", "related to Album#3")

    def test_default(self, engines):
        session = make_session(engines)
        album = Album(id=1, title="nowhere else")
        session.add(album)
        session.flush()
        assert decided(session.route_of(album)) == ("default", "default")

    def test_a_loaded_object_stays_where_it_came_from(self, engines):
        with engines["a"].begin() as conn:
            conn.execute(Album.__table__.insert().values(id=3, title="in a"))
        session = make_session(engines, EverythingTo("default"))
        album = session.using_bind("a").get(Album, 3)
        assert decided(session.route_of(album)) == ("a", "loaded from a")

    def test_a_new_object_nothing_routed_yet_has_no_route(self, engines):
        session = make_session(engines)
        assert session.route_of(Album(id=1, title="unflushed")) is None

    def test_precedence(self):
        chain = RouterChain([EverythingTo("a")])
        assert route(chain, LegacyInvoice, True, pins=["b"]).name == "b"
        assert route(chain, LegacyInvoice, True).name == "legacy"
        assert route(chain, Album, True).name == "a"
        assert route(RouterChain([]), Album, True).name == "default"
        assert route(RouterChain([]), Album, True, default=None) is None


class TestErrorsNameTheRule:
    def test_a_misspelt_bind_key_names_the_model_and_the_key(self, engines):
        class Base(DeclarativeBase):
            pass

        class Invoice(Base):
            __tablename__ = "invoices"
            __bind_key__ = "legacyy"
            id: Mapped[int] = mapped_column(primary_key=True)

        session = make_session(engines, AuthRouter())
        with pytest.raises(UnknownBindError) as info:
            session.scalars(select(Invoice)).all()
        message = str(info.value)
        assert "'legacyy'" in message
        assert "__bind_key__ of Invoice" in message
        assert "router" not in message
        session.add(Invoice(id=1))
        with pytest.raises(UnknownBindError, match="from __bind_key__ of Invoice"):
            session.flush()

    def test_an_unknown_engine_from_a_router_names_the_router(self, engines):
        session = make_session(engines, EverythingTo("replica9"))
        with pytest.raises(UnknownBindError, match="from router EverythingTo"):
            session.get(Album, 1)
        with pytest.raises(UnknownBindError, match="from router EverythingTo"):
            session.execute(text("SELECT 1"))

    def test_an_unknown_engine_from_an_execution_option(self, engines):
        session = make_session(engines)
        statement = select(Album).execution_options(dbrouter_bind="nowhere")
        with pytest.raises(UnknownBindError, match="from execution option"):
            session.execute(statement)


class TestMigration:
    """Where ``init_db`` creates a table, and why (``allow_migrate``)."""

    def test_a_router_decides_first(self):
        class OnlyA:
            def allow_migrate(self, db, model, **hints):
                return db == "a"

        allowed, why = migration(
            RouterChain([OnlyA()]), "legacy", LegacyInvoice, LegacyInvoice.__table__
        )
        assert (allowed, why.reason) == (False, "router OnlyA")

    def test_then_the_bind_key(self):
        chain = RouterChain([])
        table = LegacyInvoice.__table__
        assert migration(chain, "legacy", LegacyInvoice, table)[0] is True
        allowed, why = migration(chain, "default", LegacyInvoice, table)
        assert (allowed, why.reason, why.name) == (
            False,
            "__bind_key__ of LegacyInvoice",
            "legacy",
        )

    def test_else_every_engine(self):
        allowed, why = migration(RouterChain([]), "a", Album, Album.__table__)
        assert allowed is True and why.reason.endswith("every engine")


def test_routes_compare_by_engine_and_reason():
    assert Route("a", "using_bind") == Route("a", "using_bind")
    assert Route("a", "using_bind") != Route("b", "using_bind")
