"""Which engines wrote in a transaction.

An engine has *written* when it ran an INSERT, UPDATE, DELETE or DDL --
judged by the SQL verb for textual SQL.  That decides the commit: nothing
to commit, one engine to commit, or a two-phase commit.  The marks are set
by dialect-level events on the engines of applications with more than one
engine, on the session's Connection (one per transaction and engine), so a
savepoint never resets them.
"""

import functools
import re
import weakref

from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.elements import TextClause

from .internals import is_clean, transaction_connections

_WRITE_VERBS = frozenset(
    "INSERT UPDATE DELETE REPLACE MERGE UPSERT CREATE DROP ALTER TRUNCATE "
    "RENAME COMMENT GRANT REVOKE".split()
)
_FIRST_WORD = re.compile(r"^(?:\s|--[^\n]*\n|/\*.*?\*/|\()*([A-Za-z]+)", re.S)
_CTE_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.I)


def sql_writes(sql):
    """Whether a textual statement writes, judged by its SQL verb."""
    match = _FIRST_WORD.match(sql)
    if match is None:
        return False
    verb = match.group(1).upper()
    if verb == "WITH":
        return _CTE_WRITE.search(sql) is not None
    return verb in _WRITE_VERBS


def statement_writes(statement):
    if statement.is_select:
        return False
    if statement.is_dml or isinstance(statement, ExecutableDDLElement):
        return True
    if isinstance(statement, TextClause):
        return sql_writes(statement.text)
    return False


def connections(session, session_transaction=None):
    """``[(engine name, Connection)]`` of the root transaction, by name.

    SQLAlchemy keys each connection twice (by engine and by connection);
    connections that are closed, or invalidated after a failure, are gone.
    """
    root = session_transaction or session.get_transaction()
    if root is None:
        return []
    seen, found = set(), []
    for conn, *_ in transaction_connections(root).values():
        if id(conn) in seen or conn.closed or conn.invalidated:
            continue
        seen.add(id(conn))
        name = session.engines.name_of(conn.engine) or str(conn.engine.url)
        found.append((name, conn))
    return sorted(found, key=lambda item: item[0])


def wrote_to(session, name):
    """Whether *session*'s transaction wrote to engine *name* -- what
    ``connections`` and ``wrote`` answer, found directly for one engine."""
    root = session.get_transaction()
    if root is None:
        return False
    entry = transaction_connections(root).get(session.engine(name))
    return entry is not None and wrote(entry[0])


def has_changes(session):
    """Whether *session* holds objects its next flush will write: new,
    deleted or changed ones.  The same answer as ``session.new or
    session.deleted or session.dirty`` for a router to ask on every read,
    without building those sets or comparing every attribute."""
    return not is_clean(session)


def participants(session, session_transaction=None):
    """``[(name, Connection, wrote)]``: the participants of the commit.

    Connections of the transaction that share one DBAPI connection are one
    participant: their work is one database transaction, ended by one COMMIT
    (a pool may hand a thread's connection to every checkout in that thread,
    as SQLAlchemy's ``SingletonThreadPool`` does, and the ``execution_options()``
    copies of an engine share its pool -- the tenant plugin's attached albums).
    Such a participant is named by its engines' names joined with ``+``, and
    wrote if any of them did.
    """
    found = connections(session, session_transaction)
    if len(found) < 2:
        return [(name, conn, wrote(conn)) for name, conn in found]
    merged = {}
    for name, conn in found:
        key = id(conn.connection.dbapi_connection)
        if key in merged:
            names, first, did = merged[key]
            merged[key] = (f"{names}+{name}", first, did or wrote(conn))
        else:
            merged[key] = (name, conn, wrote(conn))
    return list(merged.values())


def wrote(connection):
    """Whether *connection* (a session's Connection, one per transaction and
    engine) ran an INSERT, UPDATE, DELETE or DDL."""
    return connection.__dict__.get("_dbrouter_wrote", False)


@functools.lru_cache(maxsize=1024)
def _text_writes(sql):
    return sql_writes(sql)


def _note_write(cursor, statement, parameters, context):
    if (
        _text_writes(statement)
        if context.is_text
        else context.isinsert or context.isupdate or context.isdelete or context.isddl
    ):
        # on the Connection object, which the session makes anew for each
        # transaction: nothing to reset, and a savepoint cannot reset it
        context.root_connection.__dict__["_dbrouter_wrote"] = True
    # None: SQLAlchemy goes on and executes the statement itself


_TRACKED = weakref.WeakSet()


def _note_write_no_params(cursor, statement, context):
    _note_write(cursor, statement, None, context)


def track_writes(engine):
    """Remember, per connection, whether the transaction wrote.

    Only applications with more than one engine need to know which engines
    wrote, so only their engines pay for it.  Dialect-level events cost far
    less than ``before_cursor_execute``: an engine-level listener sends every
    execution through SQLAlchemy's event branches (7-10 % per statement).
    """
    from sqlalchemy import event

    # not event.contains(): SQLAlchemy's registry is keyed by id(), which a
    # new dialect may reuse after an old one was collected
    if engine.dialect in _TRACKED:
        return
    _TRACKED.add(engine.dialect)
    event.listen(engine, "do_execute", _note_write, insert=True)
    event.listen(engine, "do_executemany", _note_write, insert=True)
    event.listen(engine, "do_execute_no_params", _note_write_no_params, insert=True)
