"""The seam: every private name of SQLAlchemy, zope.sqlalchemy and transaction
that pyramid_dbrouter uses, each with why no public API serves.

The rest of the package reaches them only through this module, so that a
release that renames or reshapes one breaks here, in one place, and the
canary test (``tests/test_internals.py``, one test per entry of
:data:`PRIVATE_NAMES`) says which.  Tested releases: SQLAlchemy 2.0.x and
2.1.x (``make test`` runs both), zope.sqlalchemy 3.1+, transaction 3+.

Two overrides cannot move here: ``RoutingSession._execute_internal`` and
``_identity_lookup`` (session.py) and ``RoutingDataManager._finish``
(datamanager.py) override private methods of the same names; they are
listed below all the same, and their canaries check the signatures.
"""

from sqlalchemy.engine.cursor import FullyBufferedCursorFetchStrategy
from sqlalchemy.orm import Session, mapperlib
from sqlalchemy.orm.session import SessionTransaction
from sqlalchemy.sql.base import CompileState
from transaction._transaction import Status as TransactionStatus
from zope.sqlalchemy.datamanager import _SESSION_STATE as SESSION_STATE

__all__ = ["PRIVATE_NAMES", "SESSION_STATE", "TransactionStatus"]

#: ``(owner, name, why)``: what the canary test checks exists
PRIVATE_NAMES = [
    # -- Session: routing in the session's own methods ----------------------
    (
        "Session",
        "_execute_internal",
        "every statement routed without a "
        "do_orm_execute listener, which costs 3-5 % per statement",
    ),
    (
        "Session",
        "_identity_lookup",
        "a many-to-one lazy load looks in its "
        "parent's engine's identities (no hook passes the parent's token)",
    ),
    ("Session", "_flushing", "a flush within a flush goes to SQLAlchemy"),
    ("Session", "_is_clean", "nothing to flush: nothing to route"),
    ("Session", "_new", "the pending objects to route at flush"),
    ("Session", "_deleted", "the deleted objects, flushed on their engine"),
    (
        "IdentityMap",
        "_modified",
        "the dirty objects, flushed on their engine "
        "(Session.dirty walks every attribute: too slow per flush)",
    ),
    (
        "Session",
        "_autoflush",
        "a fan-out autoflushes once, before its "
        "engines' statements, as Session.execute does",
    ),
    (
        "Session",
        "_connection_for_bind",
        "each engine's connection of the "
        "session's transaction, begun in the caller's thread (fan-out)",
    ),
    (
        "SessionTransaction",
        "_connections",
        "the transaction's connection per "
        "engine: which engines wrote, which branches to prepare",
    ),
    # -- statements ----------------------------------------------------------
    (
        "Executable",
        "_propagate_attrs",
        "the statement's mapped class (the "
        "model routers are asked about); whether it is an ORM statement",
    ),
    (
        "Executable",
        "_execution_options",
        "the statement's own options "
        "(dbrouter_bind, fanout), before Session.execute merges them",
    ),
    (
        "CompileState",
        "_get_plugin_class_for_plugin",
        "the ORM's pre- and post-execution steps, run per engine of a fan-out",
    ),
    (
        "QueryContext.default_load_options",
        "_refresh_state",
        "a refresh goes to the engine of the object it refreshes",
    ),
    (
        "QueryContext.default_load_options",
        "_lazy_loaded_from",
        "a lazy load goes to the engine of the object it loads for",
    ),
    (
        "QueryContext.default_load_options",
        "_identity_token",
        "a loader statement keeps its parent query's engine; the objects of "
        "an ORM UPDATE/DELETE/INSERT ... RETURNING get their engine's identity",
    ),
    (
        "Select",
        "_generate_cache_key",
        "a fan-out's merge plan, cached by the statement's shape",
    ),
    ("Select", "_distinct", "DISTINCT merged after the fan-out"),
    ("Select", "_distinct_on", "DISTINCT ON refused before any SQL"),
    ("Select", "_group_by_clauses", "GROUP BY merged after the fan-out"),
    ("Select", "_having_criteria", "HAVING applied after the merge"),
    ("Select", "_order_by_clauses", "the merge's sort keys"),
    ("Select", "_limit", "the page cut after merging"),
    ("Select", "_offset", "the page cut after merging"),
    (
        "Select",
        "_where_criteria",
        "where_values reads the WHERE's terms; the public whereclause "
        "builds a new AND of them on every access (half of a router's cost)",
    ),
    (
        "Select",
        "_with_options",
        "loader options decide whether raw rows can be merged before objects are built",
    ),
    # -- results -------------------------------------------------------------
    (
        "CursorResult",
        "_raw_row_iterator",
        "each engine's raw rows, merged before objects are built",
    ),
    (
        "CursorResult",
        "_fetchall_impl",
        "a bounded read fetched at once, in the worker thread",
    ),
    (
        "CursorResult",
        "_generate",
        "a result holding the buffered rows, as "
        "CursorResult.splice_vertically makes one",
    ),
    (
        "CursorResult",
        "cursor_strategy",
        "a clone serving buffered rows "
        "(assigned, with sqlalchemy.engine.cursor.FullyBufferedCursorFetchStrategy)",
    ),
    ("CursorResult", "_soft_close", "an engine's cursor closed once read"),
    ("CursorResult", "_reset_memoizations", "after swapping a clone's fetch strategy"),
    (
        "Result",
        "_attributes",
        "the ORM's result attributes carried to the merged result",
    ),
    ("Result", "_metadata", "the merged result has the first engine's columns"),
    ("Result", "_source_supports_scalars", "whether merged rows are scalars"),
    # -- engines made on demand (shared_dialects.py) --------------------------
    (
        "Engine",
        "_compiled_cache",
        "the compiled cache of a server's first "
        "dynamic engine, shared with the next ones through the public "
        "compiled_cache execution option (no public accessor)",
    ),
    (
        "Dialect",
        "_builtin_onconnect",
        "the dialect's own connect listener "
        "(isolation_level), which create_engine adds to every pool it makes "
        "and a pool made for a shared dialect needs too",
    ),
    # -- registries, transactions, zope --------------------------------------
    (
        "mapperlib",
        "_all_registries",
        "the mapped class of each table, for "
        "allow_migrate(db, model) (no public registry of registries)",
    ),
    (
        "Transaction",
        "_resources",
        "the participants of a zope transaction: "
        "is the decision point the last to vote? (no public accessor)",
    ),
    (
        "transaction._transaction",
        "Status",
        "Status.COMMITTING: session.commit() is allowed only from the manager's commit",
    ),
    (
        "zope.sqlalchemy.datamanager",
        "_SESSION_STATE",
        "join_transaction and "
        "mark_changed with our data manager and zope's session states",
    ),
    (
        "SessionDataManager",
        "_finish",
        "ending the data manager after our own "
        "commit paths (overridden to end unprepared XA branches first)",
    ),
]

# -- Session ----------------------------------------------------------------------

session_execute = Session._execute_internal
identity_lookup = Session._identity_lookup


def is_flushing(session):
    return session._flushing


def is_clean(session):
    return session._is_clean()


def pending_states(session):
    return session._new


def deleted_states(session):
    return session._deleted


def modified_states(session):
    return session.identity_map._modified


def autoflush(session):
    session._autoflush()


def connection_for_bind(session, engine):
    return session._connection_for_bind(engine)


def transaction_connections(session_transaction):
    """``{engine or connection: (connection, transaction, ...)}``."""
    return session_transaction._connections


# -- statements -----------------------------------------------------------------


def propagate_attrs(statement):
    return statement._propagate_attrs


def statement_options(statement):
    return statement._execution_options


def with_load_token(execution_options, token):
    """*execution_options* whose ORM load options carry *token*: the ORM's
    DML statements read ``identity_token`` for their synchronisation only,
    and build the objects of ``RETURNING`` with these load options."""
    from sqlalchemy.orm.context import QueryContext

    load = execution_options.get(
        "_sa_orm_load_options", QueryContext.default_load_options
    )
    options = dict(execution_options)
    options["_sa_orm_load_options"] = load + {"_identity_token": token}
    return options


def load_origin(load_options):
    """``(state refreshed or lazy-loaded from, or None; identity token)``."""
    state = load_options._refresh_state or load_options._lazy_loaded_from
    return state, load_options._identity_token


def orm_compile_state(statement):
    return CompileState._get_plugin_class_for_plugin(statement, "orm")


def cache_key(statement):
    return statement._generate_cache_key()


def is_distinct(select):
    return select._distinct


def distinct_on(select):
    return select._distinct_on


def clear_having_and_distinct(select):
    """Drop HAVING and DISTINCT from *select*, a private copy (each engine
    groups; HAVING and DISTINCT apply to the merged groups)."""
    select._having_criteria = ()
    select._distinct = False


def group_by(select):
    return select._group_by_clauses


def having(select):
    return select._having_criteria


def order_by(select):
    return select._order_by_clauses


def limit_of(select):
    return select._limit


def offset_of(select):
    return select._offset


def with_options(select):
    return select._with_options


def where_criteria(statement):
    """The terms a SELECT, UPDATE or DELETE's WHERE ANDs together (a
    tuple), or None for anything else."""
    return getattr(statement, "_where_criteria", None)


# -- results ---------------------------------------------------------------------


def raw_rows(result):
    return result._raw_row_iterator()


def fetchall_raw(cursor):
    return cursor._fetchall_impl()


def clone_result(cursor):
    return cursor._generate()


def serve_buffered(clone, rows):
    """Make *clone* (a :func:`clone_result`) serve *rows*, already fetched."""
    clone.cursor_strategy = FullyBufferedCursorFetchStrategy(None, initial_buffer=rows)


def soft_close(cursor):
    cursor._soft_close()


def reset_memoizations(result):
    result._reset_memoizations()


def supports_scalars(result):
    return result._source_supports_scalars


def result_metadata(result):
    return result._metadata


def copy_result_attributes(target, source):
    target._attributes = source._attributes


# -- engines ---------------------------------------------------------------------


def compiled_cache(engine):
    """*engine*'s compiled-statement cache (None when caching is off)."""
    return engine._compiled_cache


def builtin_on_connect(dialect):
    """The ``connect`` listener ``create_engine`` adds for *dialect*, or None."""
    return dialect._builtin_onconnect()


# -- registries and transactions -------------------------------------------------


def all_registries():
    return list(mapperlib._all_registries())


def participants(trans):
    """The data managers joined to a zope transaction."""
    return list(trans._resources)


# SessionTransaction is imported so that the canary finds it here
__all__ += ["SessionTransaction"]
