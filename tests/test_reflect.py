"""``reflect_engine``: an existing database's tables, reflected and
automapped into classes routed to their engine, used in one request next to
declarative models of ``default`` -- on a legacy SQLite database and a
MariaDB one, both made here."""

import pytest
from pyramid.config import Configurator
from sqlalchemy import String, create_engine, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from webtest import TestApp

from pyramid_dbrouter import (
    UnknownBindError,
    bind_of,
    get_engines,
    reflect_engine,
    session_scope,
)

LEGACY_SQL = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(40))",
    "CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount INTEGER,"
    " customer_id INTEGER REFERENCES customers(id))",
    "CREATE TABLE audit (who VARCHAR(20), what VARCHAR(40))",  # no primary key
    "INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace')",
    "INSERT INTO invoices VALUES (10, 100, 1), (11, 50, 1), (12, 7, 2)",
    "INSERT INTO audit VALUES ('ada', 'login')",
]


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A declarative model of ``default``: an account of a legacy customer."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(60))
    legacy_customer_id: Mapped[int]


def make_legacy(url):
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in LEGACY_SQL:
            conn.execute(text(statement))
    engine.dispose()


@pytest.fixture(params=["sqlite", "mariadb"])
def legacy_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/legacy.sqlite"
    else:
        url = request.getfixturevalue("maria_db")
    make_legacy(url)
    return url


def statement(request):
    # the view joins a declarative model of default with reflected ones of
    # legacy: one session, one request, two engines
    legacy = request.registry["legacy"]
    Customer, Invoice = legacy.classes.customers, legacy.classes.invoices
    session = request.dbsession
    account = session.scalars(select(Account).where(Account.id == 1)).one()
    customer = session.get(Customer, account.legacy_customer_id)
    total = session.scalar(
        select(func.sum(Invoice.amount)).where(Invoice.customer_id == customer.id)
    )
    return {
        "email": account.email,
        "customer": customer.name,
        "invoices": sorted(i.id for i in customer.invoices_collection),
        "total": int(total),
        "engines": [bind_of(account), bind_of(customer)],
    }


@pytest.fixture
def app(legacy_url, tmp_path):
    config = Configurator(
        settings={
            "sqlalchemy.url": f"sqlite:///{tmp_path}/main.sqlite",
            "sqlalchemy.legacy.url": legacy_url,
        }
    )
    config.include("pyramid_dbrouter")
    config.add_route("statement", "/statement")
    config.add_view(statement, route_name="statement", renderer="json")
    app = config.make_wsgi_app()
    Base.metadata.create_all(get_engines(app.registry)["default"])
    app.registry["legacy"] = reflect_engine(
        app.registry,
        "legacy",
        only=["customers", "invoices", "audit"],
        primary_keys={"audit": ["who", "what"]},
    )
    with session_scope(app.registry) as session:
        session.add(Account(id=1, email="ada@example.org", legacy_customer_id=1))
    yield app
    for engine in get_engines(app.registry).values():
        engine.dispose()


def test_a_view_joins_a_declarative_model_and_reflected_ones(app):
    assert TestApp(app).get("/statement").json == {
        "email": "ada@example.org",
        "customer": "Ada",
        "invoices": [10, 11],
        "total": 150,
        "engines": ["default", "legacy"],
    }


def test_reflected_classes_and_tables_are_routed_to_their_engine(app):
    legacy = app.registry["legacy"]
    Customer = legacy.classes.customers
    Invoice = legacy.classes.invoices
    assert Customer.__bind_key__ == "legacy"
    with session_scope(app.registry) as session:
        # ORM, Core on the reflected Table, relationships both ways
        grace = session.scalars(select(Customer).where(Customer.name == "Grace")).one()
        assert bind_of(grace) == "legacy"
        table = legacy.metadata.tables["invoices"]
        assert session.execute(select(table.c.id).where(table.c.amount == 7)).all() == [
            (12,)
        ]
        invoice = session.get(Invoice, 12)
        assert invoice.customers is grace
        # a new object of a reflected class is written to legacy
        session.add(Customer(id=3, name="Edsger"))
        audit = legacy.classes.audit
        assert session.scalars(select(audit.who)).all() == ["ada"]
    engine = create_engine(get_engines(app.registry)["legacy"].url)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM customers ORDER BY id")).scalars()
        assert list(names) == ["Ada", "Grace", "Edsger"]
    engine.dispose()


def test_a_table_without_primary_key_is_named(legacy_url, tmp_path):
    config = Configurator(
        settings={
            "sqlalchemy.url": f"sqlite:///{tmp_path}/main.sqlite",
            "sqlalchemy.legacy.url": legacy_url,
        }
    )
    config.include("pyramid_dbrouter")
    app = config.make_wsgi_app()
    with pytest.raises(ValueError, match=r"audit has no primary key.*primary_keys="):
        reflect_engine(app.registry, "legacy", only=["customers", "audit"])
    with pytest.raises(UnknownBindError, match="legacyy"):
        reflect_engine(app.registry, "legacyy")
    # without only: every table that can be mapped
    mapped = reflect_engine(app.registry, "legacy")
    assert sorted(mapped.classes.keys()) == ["customers", "invoices"]
    for engine in get_engines(app.registry).values():
        engine.dispose()
