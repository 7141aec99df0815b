"""Creating tables where the routers allow it (``init_db``, ``dbrouter init-db``).

For each configured engine and each table, ``allow_migrate(db, model)`` is
asked with the mapped class, or with the ``Table`` where no class maps it
(an association table).  When every router abstains, a model with a
``__bind_key__`` is created only on its own engine, and every other table
everywhere (Django's default).
"""

from .config import get_state
from .exceptions import ConfigurationError
from .internals import all_registries
from .routing import migration


def _classes_by_table():
    found = {}
    for registry in all_registries():
        for mapper in registry.mappers:
            for table in mapper.tables:
                found.setdefault(table, mapper.class_)
    return found


def allowed_tables(chain, name, metadata):
    """The tables of *metadata* that engine *name* should hold."""
    classes = _classes_by_table()
    return [
        table
        for table in metadata.sorted_tables
        if migration(chain, name, classes.get(table, table), table)[0]
    ]


def init_db(registry, metadata=None):
    """Create, on each configured engine, the tables ``allow_migrate`` allows.

    *metadata* is a ``MetaData`` or a declarative base; by default the one
    named by the ``dbrouter.metadata`` setting.  Returns ``{engine: [table
    names]}``.
    """
    state = get_state(registry)
    if metadata is None:
        metadata = state.metadata
    metadata = getattr(metadata, "metadata", metadata)
    if metadata is None:
        raise ConfigurationError(
            "init_db: no metadata given and no dbrouter.metadata setting "
            "(the dotted name of a MetaData or declarative base)"
        )
    created = {}
    for name, engine in state.engines.static_items():
        tables = allowed_tables(state.chain, name, metadata)
        if tables:
            metadata.create_all(engine, tables=tables)
        created[name] = [t.name for t in tables]
    return created
