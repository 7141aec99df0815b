"""The ``database`` and ``schema`` modes: a tenant per database, or per
PostgreSQL schema, named NAME_PREFIX + KEY.

Names reach SQL only as quoted identifiers, from keys already checked, and
URLs are built with ``URL.set`` -- never by formatting strings.

The schema mode gives every tenant an ``execution_options()`` copy of one
engine with its own ``schema_translate_map``: the copies share the engine's
pool (connections stay bounded however many tenants are touched) and its
compiled-statement cache.  A ``SET search_path`` would be simpler and wrong:
it outlives the transaction on a pooled connection, so the next tenant to
check that connection out would read the previous one's tables.
"""

import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateSchema, DropSchema

from pyramid_dbrouter import get_engines

from .keys import TenantExists, UnknownTenant, check_key


class _KnownTenants:
    """Tenants seen to exist, so that a request does not ask the server each
    time; forgotten when removed through the plugin."""

    def __init__(self):
        self._known = set()
        self._lock = threading.Lock()

    def check(self, key, ask):
        if key in self._known:
            return True
        found = ask(key)
        if found:
            with self._lock:
                self._known.add(key)
        return found

    def forget(self, key):
        with self._lock:
            self._known.discard(key)


class Databases:
    """A database per tenant on one PostgreSQL or MySQL/MariaDB server."""

    name = "database"

    def __init__(self, url, name_prefix):
        self.admin_url = url  # its database: the one to connect to for admin
        self.name_prefix = name_prefix
        self.backend = url.get_backend_name()
        self._known = _KnownTenants()
        self._admin = None

    def database(self, key):
        return self.name_prefix + check_key(key)

    def url(self, key):
        return self.admin_url.set(database=self.database(key))

    def admin(self):
        # no pool: administration is rare, and a script should not keep
        # connections to the maintenance database open
        if self._admin is None:
            self._admin = create_engine(
                self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        return self._admin

    def _catalog(self):
        if self.backend == "postgresql":
            return "SELECT datname FROM pg_database WHERE datname LIKE :p"
        return (
            "SELECT schema_name FROM information_schema.schemata "
            "WHERE schema_name LIKE :p"
        )

    def _names(self, pattern):
        with self.admin().connect() as conn:
            return list(conn.scalars(text(self._catalog()), {"p": pattern}))

    def exists(self, key):
        name = self.database(key)
        return self._known.check(key, lambda _key: name in self._names(name))

    def engine(self, key):
        return self.url(key)  # the core makes the engine

    def keys(self):
        like = self.name_prefix.replace("_", r"\_") + "%"
        found = []
        for name in self._names(like):
            key = name[len(self.name_prefix) :]
            try:
                found.append(check_key(key))
            except ValueError:
                continue
        return sorted(found)

    def create(self, key, metadata, tables):
        name = self.database(key)
        if self.exists(key):
            raise TenantExists(f"tenant {key!r}: database {name!r} already exists")
        quoted = self.admin().dialect.identifier_preparer.quote_identifier(name)
        with self.admin().connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quoted}"))
        engine = create_engine(self.url(key), poolclass=NullPool)
        try:
            metadata.create_all(engine, tables=tables)
        finally:
            engine.dispose()

    def remove(self, key):
        name = self.database(key)
        if not self.exists(key):
            raise UnknownTenant(f"tenant {key!r}: no database {name!r}")
        self._known.forget(key)
        quoted = self.admin().dialect.identifier_preparer.quote_identifier(name)
        with self.admin().connect() as conn:
            conn.execute(text(f"DROP DATABASE {quoted}"))

    def dispose(self):
        if self._admin is not None:
            self._admin.dispose()


class TenantSchemaEngine(OptionEngine):
    """One tenant's view of the shared engine (a schema_translate_map)."""

    def dispose(self, close=True):
        # the pool is the shared engine's: when the LRU evicts this tenant,
        # disposing would close every tenant's idle connections and replace
        # the pool under them.  There is nothing of the tenant's own to close.
        pass


class Schemas:
    """A PostgreSQL schema per tenant, in the database of one engine."""

    name = "schema"

    def __init__(self, registry, engine_name, name_prefix):
        self.registry = registry
        self.engine_name = engine_name
        self.name_prefix = name_prefix
        self._known = _KnownTenants()

    def base(self):
        return get_engines(self.registry)[self.engine_name]

    def schema(self, key):
        return self.name_prefix + check_key(key)

    def _names(self, pattern):
        with self.base().connect() as conn:
            return list(
                conn.scalars(
                    text(
                        "SELECT schema_name FROM information_schema.schemata "
                        "WHERE schema_name LIKE :p"
                    ),
                    {"p": pattern},
                )
            )

    def exists(self, key):
        name = self.schema(key)
        return self._known.check(key, lambda _key: name in self._names(name))

    def engine(self, key):
        return TenantSchemaEngine(
            self.base(), {"schema_translate_map": {None: self.schema(key)}}
        )

    def keys(self):
        like = self.name_prefix.replace("_", r"\_") + "%"
        found = []
        for name in self._names(like):
            try:
                found.append(check_key(name[len(self.name_prefix) :]))
            except ValueError:
                continue
        return sorted(found)

    def create(self, key, metadata, tables):
        name = self.schema(key)
        if self.exists(key):
            raise TenantExists(f"tenant {key!r}: schema {name!r} already exists")
        # the schema and its tables in one transaction: all or nothing
        with self.base().begin() as conn:
            conn.execute(CreateSchema(name))
            translated = conn.execution_options(schema_translate_map={None: name})
            metadata.create_all(translated, tables=tables)

    def remove(self, key):
        name = self.schema(key)
        if not self.exists(key):
            raise UnknownTenant(f"tenant {key!r}: no schema {name!r}")
        self._known.forget(key)
        with self.base().begin() as conn:
            conn.execute(DropSchema(name, cascade=True))

    def dispose(self):
        pass  # the shared engine is the core's
