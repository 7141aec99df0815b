"""A shop per tenant, each with its own archive: the application of the
per-key archive tests (``dbrouter.archive.hot = tenant:*``,
``dbrouter.archive.archive = archive:*``).

Tenant KEY is the folder ROOT/KEY: ``shop.sqlite`` (engine ``tenant:KEY``,
dbrouter_tenant's sqlite-folder mode) and ``archive.sqlite`` (engine
``archive:KEY``, the :class:`Archives` engine factory), the same tables.
Orders and their lines are archived; their customers are copied with them
(``references``); notes stay in the shop.
"""

import os
from datetime import datetime

from pyramid.config import Configurator
from sqlalchemy import DateTime, ForeignKey, Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.pool import NullPool

from dbrouter_archive import archive_rows
from dbrouter_tenant import UnknownTenant, check_key, create_tenant
from pyramid_dbrouter import bind_of, init_db

ARCHIVE_FILE = "archive.sqlite"


class ShopBase(DeclarativeBase):
    """The tables of each tenant's shop, and of its archive."""


class Customer(ShopBase):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(40))


class Order(ShopBase):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    customer: Mapped[Customer] = relationship()
    lines: Mapped[list["OrderLine"]] = relationship(
        back_populates="order", order_by="OrderLine.id"
    )


class OrderLine(ShopBase):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    sku: Mapped[str] = mapped_column(String(20))
    order: Mapped[Order] = relationship(back_populates="lines")


class Note(ShopBase):
    """Not archived: the shop only."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(40))


class SharedBase(DeclarativeBase):
    """``default``'s tables (none needed; the core wants a metadata)."""


class Archives:
    """The engine factory of ``archive:KEY``: ROOT/KEY/archive.sqlite, for
    an existing tenant folder only."""

    def __init__(self, root):
        self.root = root

    def path(self, key):
        return os.path.join(self.root, check_key(key), ARCHIVE_FILE)

    def __call__(self, key, settings):
        path = self.path(key)
        if not os.path.isfile(path):
            raise UnknownTenant(f"no archive for tenant {key!r}: no {path}")
        return f"sqlite:///{path}"

    def keys(self, settings):
        return sorted(k for k in os.listdir(self.root) if os.path.isfile(self.path(k)))


def list_orders(request):
    # the tenant's shop and its archive, merged (dbrouter_archive's router)
    orders = request.dbsession.scalars(select(Order).order_by(Order.id))
    return {"orders": [o.id for o in orders]}


def show_order(request):
    # get(): the shop, then its archive; customer and lines lazy-load there
    order = request.dbsession.get(Order, int(request.matchdict["id"]))
    if order is None:
        return {"found": False}
    return {
        "found": True,
        "engine": bind_of(order),
        "customer": order.customer.name,
        "lines": [line.sku for line in order.lines],
    }


def archive(request):
    # the hot engine is the request's tenant's: no hot= given
    ids = [int(i) for i in request.params.getall("id")]
    moved = archive_rows(request.dbsession, select(Order).where(Order.id.in_(ids)))
    return {"moved": moved.rows, "children": moved.children}


def main(global_config=None, **settings):
    settings.setdefault("dbrouter.tenant.mode", "sqlite-folder")
    settings.setdefault("dbrouter.tenant.filename", "shop.sqlite")
    settings.setdefault("dbrouter.tenant.metadata", "archive_tenant_app:ShopBase")
    settings.setdefault("dbrouter.archive.hot", "tenant:*")
    settings.setdefault("dbrouter.archive.archive", "archive:*")
    settings.setdefault("dbrouter.archive.models", "archive_tenant_app:Order")
    settings.setdefault("dbrouter.archive.references", "archive_tenant_app:Customer")
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.add_db_engine_factory(
            "archive", Archives(settings["dbrouter.tenant.root"])
        )
        config.include("dbrouter_archive")  # before the router it asks
        config.include("dbrouter_tenant")
        config.add_route("orders", "/shops/{tenant}/orders")
        config.add_route("order", "/shops/{tenant}/orders/{id}")
        config.add_route("archive", "/shops/{tenant}/archive")
        config.add_view(list_orders, route_name="orders", renderer="json")
        config.add_view(show_order, route_name="order", renderer="json")
        config.add_view(
            archive, route_name="archive", request_method="POST", renderer="json"
        )
    app = config.make_wsgi_app()
    init_db(app.registry, SharedBase.metadata)
    return app


def create_shop(registry, key, root):
    """Tenant *key*: its shop (dbrouter_tenant) and its archive, both with
    the shop's tables."""
    create_tenant(registry, key)
    url = f"sqlite:///{os.path.join(root, key, ARCHIVE_FILE)}"
    engine = create_engine(url, poolclass=NullPool)
    try:
        ShopBase.metadata.create_all(engine)
    finally:
        engine.dispose()


def write_ini(path, root, shared):
    path.write_text(
        "[app:main]\nuse = call:archive_tenant_app:main\n"
        f"sqlalchemy.url = {shared}\ndbrouter.tenant.root = {root}\n"
    )
    return str(path)
