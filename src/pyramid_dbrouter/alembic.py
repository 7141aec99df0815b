"""Alembic across engines: :func:`run_migrations`, for a project's ``env.py``.

One revision script describes the whole schema; :func:`run_migrations` runs
it on every engine of the application -- the static ones (``default``,
``archive``, shards...) and those an engine factory can list with
``keys(settings)`` (``tenant:KEY`` of dbrouter_tenant) -- each engine in its
own transaction, with its own version table.  An operation on a table that
engine does not hold (``allow_migrate`` says no, or the table's
``__bind_key__`` names another engine: the core's
:func:`pyramid_dbrouter.routing.migration`, the rule ``init_db`` follows) is
skipped there, so scripts stay plain Alembic: ``op.create_table("photos",
...)`` creates ``photos`` on the tenants' engines only.

``op.execute()`` has no table and runs on every engine; a data migration
that belongs to one engine asks :func:`engine_name` first.

Copy the template with ``python -m pyramid_dbrouter.alembic init alembic``
(README, "Migrations").  Alembic is imported only when this module is used:
install the ``alembic`` extra (``pip install pyramid_dbrouter[alembic]``).
"""

import argparse
import contextlib
import logging
import re
import shutil
import sys
from pathlib import Path

from pyramid.path import DottedNameResolver
from sqlalchemy import MetaData, Table

from .config import get_state
from .exceptions import ConfigurationError
from .migrate import allowed_tables
from .routing import migration
from .settings import DEFAULT

log = logging.getLogger(__name__)

#: the version table of ``default`` keeps Alembic's own name, so that a
#: project already migrated by the starter's ``env.py`` carries on
VERSION_TABLE = "alembic_version"

#: ``alembic -x engines=default,tenant:acme upgrade head`` migrates only those
X_ENGINES = "engines"

#: the option :func:`run_migrations` gives each engine's MigrationContext
ENGINE_OPTION = "dbrouter_engine"

TEMPLATE = Path(__file__).with_name("alembic_template")


def version_table(name):
    """The version table of engine *name*: ``alembic_version`` for
    ``default``, ``alembic_version_NAME`` for another static engine, and one
    per factory for engines it makes (``alembic_version_tenant`` for every
    ``tenant:KEY``: a tenant's database copied to a new key stays
    migrated).  Engines sharing one database never share a version table."""
    if name == DEFAULT:
        return VERSION_TABLE
    prefix = name.partition(":")[0]
    return f"{VERSION_TABLE}_{re.sub(r'[^A-Za-z0-9_]', '_', prefix)}"


def engine_names(registry, *, listed=True):
    """The names of the engines to migrate: the static ones (``default``
    first), then ``PREFIX:KEY`` for each key of each engine factory that can
    list its keys (``factory.keys(settings)``), unless *listed* is false."""
    engines = get_state(registry).engines
    names = engines.names()
    if listed:
        for prefix, factory in sorted(engines.factories.items()):
            keys = getattr(factory, "keys", None)
            if callable(keys):
                names += [f"{prefix}:{key}" for key in keys(engines.settings)]
    return names


def engine_name():
    """In a revision script: the name of the engine being migrated
    (``"default"``, ``"tenant:acme"``), for ``op.execute()`` and other work
    that is not about one table::

        if engine_name() == "default":
            op.execute("UPDATE settings SET theme = 'dark'")
    """
    from alembic import op

    return op.get_context().opts[ENGINE_OPTION]


class TablesOf:
    """Which tables engine *name* holds, by the core's one decision
    (``routing.migration``) over the tables of *metadatas*.

    A table no metadata knows (one a later revision removed from the
    models) is asked about as a bare ``Table`` of that name: the routers
    may recognise it by name; when they all abstain it is everywhere."""

    def __init__(self, chain, name, metadatas):
        self.chain = chain
        self.name = name
        self.known = {}
        self.allowed = set()
        for metadata in metadatas:
            for table in metadata.sorted_tables:
                self.known.setdefault(table.key, table)
            self.allowed.update(t.key for t in allowed_tables(chain, name, metadata))

    def holds(self, table_name, schema=None):
        key = f"{schema}.{table_name}" if schema else table_name
        if key in self.known:
            return key in self.allowed
        stranger = Table(table_name, MetaData(), schema=schema)
        return migration(self.chain, self.name, stranger, stranger)[0]

    def include_object(self, obj, name, type_, reflected, compare_to):
        """Alembic's autogenerate hook: compare only this engine's tables
        (and leave the version tables and the commit-decision log alone)."""
        if type_ != "table":
            return True
        if name.startswith(VERSION_TABLE) or name == "dbrouter_decisions":
            return False
        return self.holds(name, obj.schema)


def _table_of(operation):
    """``(name, schema)`` of the table an Alembic operation changes, or None
    (``op.execute``: no table)."""
    from alembic.operations import ops

    if isinstance(operation, ops.BulkInsertOp):
        table = operation.table
        return table.name, getattr(table, "schema", None)
    if isinstance(operation, ops.RenameTableOp):
        # the name the models know it by from now on
        return operation.new_table_name, operation.schema
    if isinstance(operation, ops.CreateForeignKeyOp):
        return operation.source_table, operation.source_schema
    name = getattr(operation, "table_name", None)
    if name is None:
        return None
    return name, getattr(operation, "schema", None)


class _Skipped:
    """``op.batch_alter_table(...)`` of a table this engine does not hold:
    every batch operation is a no-op (Alembic would reflect a missing table)."""

    def __getattr__(self, name):
        return lambda *args, **kw: None


@contextlib.contextmanager
def _routed_operations(migration_context, tables):
    """Alembic's ``op`` for one engine, skipping the operations on tables
    the engine does not hold."""
    from alembic.operations import Operations, ops

    with Operations.context(migration_context) as operations:
        invoke = operations.invoke
        batch_alter_table = operations.batch_alter_table

        def routed_invoke(operation):
            table = _table_of(operation)
            if table is not None and not tables.holds(*table):
                log.info(
                    "engine %s: skipped %s on %s (not one of its tables)",
                    tables.name,
                    type(operation).__name__,
                    table[0],
                )
                if isinstance(operation, ops.CreateTableOp):
                    # what op.create_table returns, for op.bulk_insert
                    return operation.to_table(migration_context)
                return None
            return invoke(operation)

        @contextlib.contextmanager
        def routed_batch(table_name, schema=None, **kw):
            if not tables.holds(table_name, schema):
                yield _Skipped()
                return
            with batch_alter_table(table_name, schema=schema, **kw) as batch:
                yield batch

        # instance attributes: the ``op`` module proxies look them up on
        # this object, and nothing outside this block sees them
        operations.invoke = routed_invoke
        operations.batch_alter_table = routed_batch
        yield operations


def _metadatas(metadata, state):
    if metadata is None:
        metadata = state.metadata
    if metadata is None:
        raise ConfigurationError(
            "run_migrations: no metadata given and no dbrouter.metadata setting "
            "(the dotted name of a MetaData or declarative base)"
        )
    many = metadata if isinstance(metadata, list | tuple) else [metadata]
    resolve = DottedNameResolver().maybe_resolve
    return [getattr(resolve(m), "metadata", resolve(m)) for m in many]


def _merge_autogenerated(context, revision, directives):
    """Autogenerate compares each engine in turn; make one script of it:
    every engine's operations once, in order, the downgrade their reverse."""
    from alembic.autogenerate import render_python_code
    from alembic.operations import ops

    script = directives[0]
    if len(script.upgrade_ops_list) < 2:
        return
    merged, seen = [], set()
    for upgrade in script.upgrade_ops_list:
        for operation in upgrade.ops:
            code = render_python_code(ops.UpgradeOps(ops=[operation]))
            if code not in seen:
                seen.add(code)
                merged.append(operation)
    upgrade = ops.UpgradeOps(ops=merged)
    script.upgrade_ops = upgrade
    script.downgrade_ops = upgrade.reverse()


@contextlib.contextmanager
def _application(config, registry, config_uri):
    """The registry given, or the application of the INI file bootstrapped
    (its engines' pools closed afterwards)."""
    if registry is None:
        registry = config.attributes.get("registry")
    if registry is not None:
        yield registry
        return
    from pyramid.paster import bootstrap

    env = bootstrap(config_uri or config.config_file_name)
    try:
        if env["registry"].get("dbrouter") is None:
            raise ConfigurationError(
                f"the application of {config.config_file_name!r} does not use "
                "pyramid_dbrouter; its main() should call "
                'config.include("pyramid_dbrouter")'
            )
        yield env["registry"]
    finally:
        get_state(env["registry"]).engines.dispose()
        env["closer"]()


def run_migrations(
    context=None,
    *,
    registry=None,
    metadata=None,
    engines=None,
    config_uri=None,
    version_table=version_table,
    **configure_options,
):
    """Run the Alembic command of *context* (``alembic.context``, the
    default) on every engine of the application, one after the other.

    - *registry*: the application's registry; by default the one passed as
      ``config.attributes["registry"]`` (tests, scripts), else the
      application of *config_uri* (by default the INI file Alembic was given,
      whose ``[app:main]`` is the application) is loaded with
      ``pyramid.paster.bootstrap``.
    - *metadata*: a ``MetaData`` or declarative base (or its dotted name),
      or a list of them (the tenants' base next to the shared one); by
      default ``dbrouter.metadata``.
    - *engines*: the names to migrate; by default ``-x engines=a,b`` from
      the command line, else :func:`engine_names` (every engine).
    - *version_table*: ``name -> table name``, :func:`version_table` by default.
    - other keywords go to ``context.configure`` (``compare_type=True``...).

    Each engine is migrated in its own transaction: a failure stops the run
    at that engine, those before it stay migrated, and running the command
    again carries on (each engine's version table says where it is).
    """
    if context is None:
        from alembic import context
    with _application(context.config, registry, config_uri) as registry:
        state = get_state(registry)
        metadatas = _metadatas(metadata, state)
        if engines is None:
            chosen = context.get_x_argument(as_dictionary=True).get(X_ENGINES)
            engines = chosen.split(",") if chosen else engine_names(registry)
        for name in engines:
            _migrate(context, state, name.strip(), metadatas, version_table(name))


def _migrate(context, state, name, metadatas, version):
    opened = name in state.engines.open_dynamic_names()
    engine = state.engines.get(name)
    tables = TablesOf(state.chain, name, metadatas)
    options = dict(
        target_metadata=metadatas if len(metadatas) > 1 else metadatas[0],
        version_table=version,
        include_object=tables.include_object,
        process_revision_directives=_merge_autogenerated,
        **{ENGINE_OPTION: name},
    )
    log.info("migrating engine %s (version table %s)", name, version)
    try:
        if context.is_offline_mode():
            # ``alembic upgrade --sql``: each engine's script in turn
            context.configure(url=engine.url, literal_binds=True, **options)
            context.get_context().impl.static_output(f"-- engine {name}")
            _run(context, tables)
            return
        with engine.connect() as connection:
            context.configure(connection=connection, **options)
            _run(context, tables)
    finally:
        if ":" in name and not opened:
            # thousands of tenants: close each as soon as it is done
            state.engines.discard(name)


def _run(context, tables):
    with context.begin_transaction():
        with _routed_operations(context.get_context(), tables):
            context.get_context().run_migrations()


# -- python -m pyramid_dbrouter.alembic init DIRECTORY ------------------------------

INI_LINES = """\
[alembic]
script_location = {location}
# file_template = %%(year)d%%(month).2d%%(day).2d_%%(rev)s
"""


def init(directory, out=None):
    """Copy the template (``env.py``, ``script.py.mako``, ``versions/``) into
    *directory*, as ``alembic init`` does, and print the INI lines to add."""
    out = out or sys.stdout
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    shutil.copytree(
        TEMPLATE,
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    print(f"Created {target}/ (env.py, script.py.mako, versions/).", file=out)
    print("Add to the INI file of your application:\n", file=out)
    location = target.as_posix()
    if not target.is_absolute():
        location = f"%(here)s/{location}"
    print(INI_LINES.format(location=location), file=out)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pyramid_dbrouter.alembic",
        description="Alembic across the engines of a pyramid_dbrouter application.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("init", help="copy the env.py template into DIRECTORY")
    make.add_argument("directory")
    args = parser.parse_args(argv)
    try:
        init(args.directory)
    except FileExistsError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
