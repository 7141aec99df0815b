"""Table-per-shard models: one mapped class per ``NAME_<suffix>`` table.

Some schemas hold one table per shard, month or customer (``event_2024``,
``event_2025``...), too many to declare by hand.  :class:`TableModels` maps
a *template* -- a plain mixin of ``mapped_column`` attributes -- once per
suffix::

    class EventColumns:
        id = mapped_column(BigInteger, primary_key=True)
        body = mapped_column(String(200))

    events = TableModels(EventColumns, "event", metadata=Base.metadata)
    Event2024 = events.model("2024")          # table event_2024, made once

Every class is made on the factory's own class registry, so that names never
collide with the application's classes (no "multiple classes found", no
"Class already has a primary mapper defined": a suffix is mapped once, and
the cached class is returned after that, to every thread).  Give the
application's ``MetaData`` (as above) and the tables are those of
``dbrouter.metadata``: ``dbrouter init-db`` creates the ones made so far,
and string foreign keys (``ForeignKey("event_2024.id")``) find them.
"""

import re
import threading

from sqlalchemy import MetaData
from sqlalchemy.orm import registry as class_registry

from .exceptions import TableSuffixError

#: lower-case letters, digits and "_": the same identifier, unquoted, on
#: PostgreSQL, MySQL/MariaDB and SQLite, and no quoting to get wrong
SUFFIX = re.compile(r"^[a-z0-9_]+$")
#: PostgreSQL truncates identifiers beyond 63 bytes (MySQL refuses beyond 64)
MAX_IDENTIFIER = 63


def check_table_name(name, what="table name"):
    if not isinstance(name, str) or not SUFFIX.fullmatch(name):
        raise TableSuffixError(
            f"{what} {name!r} is not accepted: use lower-case letters a-z, digits "
            "and '_' only"
        )
    if len(name.encode("utf-8")) > MAX_IDENTIFIER:
        raise TableSuffixError(
            f"{what} {name!r} is {len(name)} characters long; table names are "
            f"limited to {MAX_IDENTIFIER} (PostgreSQL's limit, one under MySQL's)"
        )
    return name


class TableModels:
    """Mapped classes for the tables ``NAME_<suffix>``, one per suffix, made
    once from *template*.  Thread-safe.

    *template* is a mixin class (its ``mapped_column`` attributes, and
    ``declared_attr`` for relationships or foreign keys); *name* the tables'
    common prefix (the template's name in lower case by default); *metadata*
    the ``MetaData`` the tables join (a new one by default).
    """

    def __init__(self, template, name=None, *, metadata=None):
        self.template = template
        self.name = check_table_name(name or template.__name__.lower(), "name")
        self.metadata = metadata if metadata is not None else MetaData()
        self.registry = class_registry(metadata=self.metadata)
        self._models = {}
        self._lock = threading.Lock()

    def __repr__(self):
        return f"<TableModels {self.name}_<suffix> of {self.template.__name__}>"

    def table_name(self, suffix):
        """``NAME_<suffix>``, checked: a :class:`TableSuffixError` otherwise."""
        if not isinstance(suffix, str) or not SUFFIX.fullmatch(suffix):
            raise TableSuffixError(
                f"table suffix {suffix!r} for {self.name}_<suffix> is not accepted: "
                "use lower-case letters a-z, digits and '_' only"
            )
        return check_table_name(f"{self.name}_{suffix}")

    def model(self, suffix):
        """The mapped class of table ``NAME_<suffix>``, made on first use."""
        found = self._models.get(suffix)
        if found is not None:
            return found  # the common case: no lock
        table = self.table_name(suffix)
        with self._lock:
            # another thread may have made it while this one waited
            found = self._models.get(suffix)
            if found is None:
                found = self._make(suffix, table)
                self._models[suffix] = found
        return found

    def models(self, suffixes):
        """``{suffix: class}``; every suffix is checked before any is made."""
        suffixes = list(suffixes)
        for suffix in suffixes:
            self.table_name(suffix)
        return {suffix: self.model(suffix) for suffix in suffixes}

    def suffixes(self):
        """The suffixes mapped so far, sorted."""
        return sorted(self._models)

    def create_tables(self, engine, suffixes):
        """Create the tables of *suffixes* on *engine* (those missing); every
        suffix is checked before any SQL is sent."""
        made = self.models(suffixes)
        self.metadata.create_all(
            engine, tables=[cls.__table__ for cls in made.values()]
        )
        return made

    def _make(self, suffix, table):
        class_name = f"{self.template.__name__}_{suffix}"
        namespace = {"__tablename__": table, "__module__": self.template.__module__}
        cls = type(class_name, (self.template,), namespace)
        self.registry.map_declaratively(cls)
        return cls
