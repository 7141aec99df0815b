"""Canaries: every private name pyramid_dbrouter relies on is still there.

One test per entry of ``pyramid_dbrouter.internals.PRIVATE_NAMES``, on real
objects of the installed SQLAlchemy, zope.sqlalchemy and transaction; a
release that drops or renames one fails here with the name and what it was
for, rather than somewhere deep in a routing or commit test.
"""

import importlib

import pytest
import sqlalchemy
import transaction
import zope.sqlalchemy
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.context import QueryContext

from pyramid_dbrouter import internals
from sample import Album, Base


@pytest.fixture(scope="module")
def world():
    """Real objects of each owner named in PRIVATE_NAMES."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = Session(engine)
    session.add(Album(id=1, title="canary"))
    session.flush()
    statement = select(Album).where(Album.id == 1).order_by(Album.id).limit(1)
    with engine.connect() as conn:
        cursor = conn.execute(text("SELECT 1"))
        owners = {
            "Session": session,
            "IdentityMap": session.identity_map,
            "SessionTransaction": session.get_transaction(),
            "Executable": statement,
            "Select": statement,
            "CompileState": sqlalchemy.sql.base.CompileState,
            "QueryContext.default_load_options": QueryContext.default_load_options,
            "CursorResult": cursor,
            "Result": session.execute(statement),
            "mapperlib": sqlalchemy.orm.mapperlib,
            "Transaction": transaction.TransactionManager().begin(),
            "transaction._transaction": importlib.import_module(
                "transaction._transaction"
            ),
            "zope.sqlalchemy.datamanager": zope.sqlalchemy.datamanager,
            "SessionDataManager": zope.sqlalchemy.datamanager.SessionDataManager,
            "Engine": engine,
            "Dialect": engine.dialect,
        }
        yield owners
    session.close()
    engine.dispose()


@pytest.mark.parametrize(
    "owner, name, why",
    internals.PRIVATE_NAMES,
    ids=[f"{owner}.{name}" for owner, name, _why in internals.PRIVATE_NAMES],
)
def test_the_private_name_is_there(world, owner, name, why):
    found = world[owner]
    assert hasattr(found, name), (
        f"{owner}.{name} is gone (SQLAlchemy {sqlalchemy.__version__}): "
        f"pyramid_dbrouter uses it for {why}; see pyramid_dbrouter/internals.py"
    )


def test_every_private_access_of_the_package_is_in_the_seam():
    """No module but internals.py reaches into another package's privates."""
    import ast
    from pathlib import Path

    import pyramid_dbrouter

    listed = {name for _owner, name, _why in internals.PRIVATE_NAMES}
    # the package's own private attributes, read from module functions
    ours = {"_dbr_", "_static", "_lock", "_transaction", "_manager", "_pending"}
    ours |= {"_current", "_flush"}  # trace.py's Trace
    found = []
    for path in Path(pyramid_dbrouter.__file__).parent.glob("*.py"):
        if path.name == "internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") or any(node.attr.startswith(p) for p in ours):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super":
                if node.attr in listed:  # an override calling its base
                    continue
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert found == []


def test_the_compiled_cache_is_the_one_statements_are_cached_in():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    cache = internals.compiled_cache(engine)
    before = len(cache)
    with engine.connect() as conn:
        conn.execute(select(Album.id))
        conn.execute(select(Album.id))
    assert len(cache) == before + 1
    assert (
        internals.compiled_cache(create_engine("sqlite://", query_cache_size=0)) is None
    )


def test_the_builtin_on_connect_sets_the_isolation_level():
    plain = create_engine("sqlite://")
    assert internals.builtin_on_connect(plain.dialect) is None
    serial = create_engine("sqlite://", isolation_level="READ UNCOMMITTED")
    listener = internals.builtin_on_connect(serial.dialect)
    raw = serial.dialect.connect(":memory:")
    listener(raw, None)
    assert raw.execute("PRAGMA read_uncommitted").fetchone() == (1,)
    raw.close()
