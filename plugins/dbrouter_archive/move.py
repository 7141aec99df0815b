"""Moving rows, and their children, from the hot engine to the archive.

Where both engines can take part in a two-phase commit (PostgreSQL,
MariaDB/MySQL; or one of them SQLite, then the last resource), the copy and
the delete are statements of the caller's transaction, and the core's
recoverable two-phase commit makes them one: after a crash at any point,
``dbrouter recover`` leaves every row in exactly one database.  The rows are
read ``FOR UPDATE`` (on SQLite, after taking the database's write lock), so
that nothing changes them, or gives them a child, between the copy and the
delete.

Where they cannot (two SQLite files), the move is two committed steps:

1. the copy, committed on the archive at once (on a connection of its own),
   idempotent: the archive's rows of those keys are deleted, then inserted
   anew (an upsert that every database speaks);
2. the delete, a statement of the caller's transaction, committed with it.

A crash between the two leaves the rows in both engines: reads return them
once, hot's copy (the router's ``fanout_unique``), and moving them again
finishes the job.  A row is never lost.

*only_if* (the batch job's cutoff) is checked again in the delete's WHERE:
a row changed after it was read no longer matches and stays in hot, with
its children; its copy is then removed from the archive.

The rows of *references* models an archived row refers to (many-to-one: the
tags of a picture) are copied with it, before it, and stay in hot: only the
ones the archive lacks are inserted, since other archived rows may refer to
those already there.

With an archive per key (``tenant:*``, ``archive:*``) the hot engine is the
one the objects were loaded from, the one the routers choose for the model
(the request's tenant), or the caller's ``hot=``; the archive is its pair.
"""

from dataclasses import dataclass

from sqlalchemy import delete, false, insert, inspect, select
from sqlalchemy.orm.interfaces import MANYTOONE
from sqlalchemy.sql import Select

from pyramid_dbrouter import bind_of

from .archive import get_archive
from .exceptions import ArchiveMoveError


def checkpoint(name):
    """A point of a move (``"copied"``, ``"deleted"``): a no-op, replaced by
    the crash tests."""


@dataclass
class Moved:
    """What one move did: rows of the model moved, rows of its children
    moved, and rows left in hot by the re-check of *only_if*."""

    rows: int = 0
    children: int = 0
    kept: int = 0

    def __add__(self, other):
        return Moved(
            self.rows + other.rows,
            self.children + other.children,
            self.kept + other.kept,
        )


def archive_rows(session, objects_or_select, *, only_if=None, hot=None):
    """Move rows of an archived model, and their children, from hot to
    archive, in *session*'s transaction; return a :class:`Moved`.

    *objects_or_select* is a ``select()`` of one archived model (its rows in
    hot are moved), or objects loaded from hot (they are expunged from the
    session).  *only_if* is a condition on the model's table the rows must
    still meet when they are deleted.  *hot* names the hot engine of a
    per-key archive (``"tenant:alps"``) where the routers cannot tell it.
    """
    archive = get_archive(session)
    if isinstance(objects_or_select, Select):
        statement = objects_or_select
        model = statement.column_descriptions[0].get("entity")
        if model is None:
            raise ArchiveMoveError(
                f"archive_rows: {statement} selects no model; select one "
                "archived model, select(Order).where(...)"
            )
        pk = inspect(model).primary_key
        hot = archive.hot_for(session, model, hot)
        keys = session.using_bind(hot).execute(statement.with_only_columns(*pk))
        keys = [tuple(k) for k in keys]
        return move_keys(session, model, keys, only_if=only_if, hot=hot)
    objects = list(objects_or_select)
    moved = Moved()
    by_model = {}
    for obj in objects:
        if not archive.is_hot(bind_of(obj)) or hot not in (None, bind_of(obj)):
            raise ArchiveMoveError(
                f"archive_rows: {type(obj).__name__} {inspect(obj).identity} is in "
                f"{bind_of(obj)!r}, not in the hot engine {hot or archive.hot!r}"
            )
        by_model.setdefault((type(obj), bind_of(obj)), []).append(obj)
    session.flush()
    for (model, bind), found in by_model.items():
        keys = [inspect(obj).identity for obj in found]
        moved += move_keys(session, model, keys, only_if=only_if, hot=bind)
        for obj in found:
            session.expunge(obj)
    return moved


def move_keys(session, model, keys, *, only_if=None, hot=None):
    """Move the rows of *model* whose primary keys are *keys* (tuples), and
    their children; see :func:`archive_rows`."""
    if not keys:
        return Moved()
    archive = get_archive(session)
    family = archive.family(model)
    hot_name = archive.hot_for(session, model, hot)
    names = Names(hot_name, archive.archive_of(hot_name))
    engines = [session.engine(names.hot), session.engine(names.archive)]
    atomic = archive.atomic(engines)
    hot = session.using_bind(names.hot)
    # nothing may change the rows between their copy and their delete: lock
    # them (FOR UPDATE), or on SQLite take the database's write lock first
    # (a DELETE of no row begins the write transaction)
    lock = engines[0].dialect.name != "sqlite"
    if not lock:
        hot.execute(delete(family[0].table).where(false()))

    # read the family's rows in hot, parents first
    rows = {}
    for member in family:
        if member.parent is None:
            where = member.has_key(keys)
        else:
            parent_col, child_col = member.link
            values = {r[parent_col.key] for r in rows[member.parent]}
            if not values:
                rows[member] = []
                continue
            where = member.table.c[child_col.key].in_(values)
        statement = select(member.table).where(where)
        if lock:
            statement = statement.with_for_update()
        rows[member] = [dict(r._mapping) for r in hot.execute(statement)]
    if not rows[family[0]]:
        return Moved()
    refs = _references(hot, archive.references, family, rows)

    # 1. the copy: as statements of the transaction, or committed now
    if atomic:
        _copy(session.using_bind(names.archive).execute, family, rows, refs)
    else:
        with engines[1].begin() as conn:
            _copy(conn.execute, family, rows, refs)
    checkpoint("copied")

    # 2. the delete, children first; with *only_if*, only the rows whose
    # ancestors still meet it
    counts = {}
    for member in reversed(family):
        if not rows[member]:
            counts[member] = 0
            continue
        where = member.has_key([member.key_of(r) for r in rows[member]])
        if only_if is not None:
            where = where & _eligible(member, rows, only_if)
        counts[member] = hot.execute(delete(member.table).where(where)).rowcount
    checkpoint("deleted")

    moved = Moved(counts[family[0]], sum(counts[m] for m in family[1:]))
    moved.kept = len(rows[family[0]]) - moved.rows
    if moved.kept:
        # the re-check kept some rows in hot: their copies go
        _uncopy(session, names, atomic, engines[1], family, rows, keys)
    return moved


@dataclass
class Names:
    """The two engines of one move."""

    hot: str
    archive: str


def _references(hot, references, family, rows):
    """``[(table, primary key column, rows)]``: the rows of *references*
    models the family's rows refer to (many-to-one), read from hot."""
    wanted = {}
    for member in family:
        for prop in member.mapper.relationships:
            if prop.direction is not MANYTOONE or prop.secondary is not None:
                continue
            if prop.mapper.class_ not in references:
                continue
            pairs = prop.local_remote_pairs
            target_pk = list(prop.mapper.primary_key)
            one = len(pairs) == 1 and len(target_pk) == 1
            if not one or pairs[0][1] is not target_pk[0]:
                raise ArchiveMoveError(
                    f"{prop}: dbrouter_archive copies references joined on their "
                    "one-column primary key"
                )
            local, remote = pairs[0]
            values = {r[local.key] for r in rows[member]} - {None}
            wanted.setdefault(remote.table, (remote, set()))[1].update(values)
    found = []
    for table, (column, values) in wanted.items():
        if values:
            selected = hot.execute(select(table).where(column.in_(values)))
            found.append((table, column, [dict(r._mapping) for r in selected]))
    return found


def _copy(execute, family, rows, refs=()):
    """Insert the references the archive lacks; delete the archive's rows of
    these keys, children first, then insert the rows, parents first: an
    upsert, so that a copy can run again."""
    for table, column, found in refs:
        present = {
            k[0]
            for k in execute(
                select(column).where(column.in_([r[column.key] for r in found]))
            )
        }
        missing = [r for r in found if r[column.key] not in present]
        if missing:
            execute(insert(table), missing)
    for member in reversed(family):
        if rows[member]:
            keys = [member.key_of(r) for r in rows[member]]
            execute(delete(member.table).where(member.has_key(keys)))
    for member in family:
        if rows[member]:
            execute(insert(member.table), rows[member])


def _eligible(member, rows, only_if):
    """The condition a row of *member* meets when its root still meets
    *only_if*: through a subquery per level up to the root."""
    if member.parent is None:
        return only_if
    parent = member.parent
    parent_col, child_col = member.link
    parents = select(parent.table.c[parent_col.key]).where(
        parent.has_key([parent.key_of(r) for r in rows[parent]]),
        _eligible(parent, rows, only_if),
    )
    return member.table.c[child_col.key].in_(parents.scalar_subquery())


def _uncopy(session, names, atomic, archive_engine, family, rows, keys):
    """Remove from the archive the copies of the rows still in hot."""
    root = family[0]
    hot = session.using_bind(names.hot)
    still = {
        tuple(k)
        for k in hot.execute(
            select(*[root.table.c[c.key] for c in root.pk]).where(root.has_key(keys))
        )
    }
    kept = {root: [r for r in rows[root] if root.key_of(r) in still]}
    for member in family[1:]:
        parent_col, child_col = member.link
        values = {r[parent_col.key] for r in kept[member.parent]}
        kept[member] = [r for r in rows[member] if r[child_col.key] in values]

    def run(execute):
        for member in reversed(family):
            if kept[member]:
                own = [member.key_of(r) for r in kept[member]]
                execute(delete(member.table).where(member.has_key(own)))

    if atomic:
        run(session.using_bind(names.archive).execute)
    else:
        with archive_engine.begin() as conn:
            run(conn.execute)
