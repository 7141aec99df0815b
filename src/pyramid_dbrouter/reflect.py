"""Existing databases next to declarative models: one engine's tables,
reflected and automapped into classes routed to that engine.

::

    legacy = reflect_engine(registry, "legacy", only=["customers", "invoices"])
    Customer = legacy.classes.customers
    Invoice = legacy.classes.invoices
    request.dbsession.get(Customer, 7).invoices_collection   # read from legacy

Every class has the engine's name as its ``__bind_key__`` and every table
has it in ``Table.info["bind_key"]``, so that ORM and Core statements on
them go to that engine, whatever the routers say of other models, and
relationships between reflected tables (automap's, from their foreign
keys) load from it.  A table without a primary key (a log, a view), which
automap cannot map ("could not assemble any primary key columns"), is
mapped when ``primary_keys`` names the columns that identify its rows.

Reflection connects to the database: call it once at start-up, after the
configuration is committed (``config.make_wsgi_app()``), not per request.
"""

from sqlalchemy import Column, MetaData, Table
from sqlalchemy.ext.automap import automap_base

from .config import get_state


def reflect_engine(
    registry,
    name,
    only=None,
    *,
    primary_keys=None,
    views=False,
    schema=None,
    **prepare_options,
):
    """Reflect the tables of the engine *name* and map them; return the
    automap base (its classes are ``base.classes.TABLE``, its tables
    ``base.metadata.tables``).

    *only* lists the tables (and views) to map, by default every table;
    *primary_keys* maps a table name to the column names identifying its
    rows where the database declares none; *views* reflects views too (give
    them ``primary_keys``).  Other keyword arguments go to automap's
    ``prepare()`` (``classname_for_table``, ``name_for_collection_relationship``...).
    """
    registry = getattr(registry, "registry", registry)  # or a request
    engine = get_state(registry).engines.get(name, "reflect_engine")
    metadata = MetaData(schema=schema)
    primary_keys = dict(primary_keys or {})
    with engine.connect() as conn:
        for table, columns in primary_keys.items():
            # declared before the reflection fills the rest in
            Table(
                table,
                metadata,
                *[Column(c, primary_key=True) for c in columns],
                autoload_with=conn,
                info={"bind_key": name},
            )
        metadata.reflect(conn, only=only, views=views, extend_existing=False)
    for table in metadata.tables.values():
        table.info["bind_key"] = name
    base = automap_base(metadata=metadata)
    base.__bind_key__ = name
    base.prepare(**prepare_options)
    unmapped = sorted(
        t.name
        for t in metadata.tables.values()
        if not t.primary_key and (only is None or t.name in only)
    )
    if only is not None and unmapped:
        raise ValueError(
            f"reflect_engine({name!r}): {', '.join(unmapped)} "
            f"{'has' if len(unmapped) == 1 else 'have'} no primary key, and cannot "
            "be mapped; name the columns that identify a row: "
            f"primary_keys={{{unmapped[0]!r}: ['id']}}"
        )
    return base
