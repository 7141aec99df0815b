"""The shop the archive tests run: orders and their lines, recent ones in
``hot``, old ones in ``archive``; notes are not archived.  ``main`` is the
application of the ini files the command-line and crash tests write."""

from datetime import datetime

from pyramid.config import Configurator
from sqlalchemy import DateTime, ForeignKey, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pyramid_dbrouter import init_db


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer: Mapped[str] = mapped_column(String(40))
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    lines: Mapped[list["OrderLine"]] = relationship(
        back_populates="order", order_by="OrderLine.id"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    sku: Mapped[str] = mapped_column(String(20))
    order: Mapped[Order] = relationship(back_populates="lines")


class Note(Base):
    """Not archived (dbrouter.archive.models names Order): hot only."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(40))


def list_orders(request):
    # an ordinary query: read from hot and archive, merged by the core
    limit = int(request.params.get("limit", 1000))
    orders = request.dbsession.scalars(select(Order).order_by(Order.id).limit(limit))
    return [o.id for o in orders]


def show_order(request):
    # get(): hot, then archive; the lines lazy-load from the order's engine
    order = request.dbsession.get(Order, int(request.matchdict["id"]))
    if order is None:
        return {"found": False}
    return {"found": True, "customer": order.customer, "lines": len(order.lines)}


def add_order(request):
    # a new order goes to hot
    params = request.params
    order = Order(
        id=int(params["id"]),
        customer=params.get("customer", "c"),
        created_at=datetime.fromisoformat(params["created_at"]),
    )
    order.lines = [OrderLine(id=int(params["id"]) * 10 + i, sku="s") for i in range(2)]
    request.dbsession.add(order)
    return {"ok": True}


def rename_order(request):
    # a write to an order wherever it is (origin) or refused (refuse)
    order = request.dbsession.get(Order, int(request.matchdict["id"]))
    order.customer = request.params["customer"]
    return {"ok": True}


def main(global_config=None, **settings):
    settings.setdefault("dbrouter.archive.models", "archive_app:Order")
    with Configurator(settings=settings) as config:
        config.include("pyramid_dbrouter")
        config.include("dbrouter_archive")
        config.add_route("orders", "/orders")
        config.add_route("order", "/orders/{id}")
        config.add_view(
            list_orders, route_name="orders", request_method="GET", renderer="json"
        )
        config.add_view(
            add_order, route_name="orders", request_method="POST", renderer="json"
        )
        config.add_view(
            show_order, route_name="order", request_method="GET", renderer="json"
        )
        config.add_view(
            rename_order, route_name="order", request_method="POST", renderer="json"
        )
    return config.make_wsgi_app()


def make_app(engines, **settings):
    """The application over *engines* (``{name: url}``: default, hot's
    ``archive``...), tables made where the routers allow."""
    for name, url in engines.items():
        key = "sqlalchemy.url" if name == "default" else f"sqlalchemy.{name}.url"
        settings[key] = url
    settings.setdefault("dbrouter.archive.archive", "archive")
    app = main({}, **settings)
    init_db(app.registry, Base.metadata)
    return app


def write_ini(path, engines, **settings):
    """An ini file for ``main`` over *engines*."""
    lines = ["[app:main]", "use = call:archive_app:main"]
    for name, url in engines.items():
        key = "sqlalchemy.url" if name == "default" else f"sqlalchemy.{name}.url"
        lines.append(f"{key} = {url}")
    settings.setdefault("dbrouter.archive.archive", "archive")
    lines += [f"{k} = {v}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)
