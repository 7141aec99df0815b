"""A model's *family*: its table and the tables of its children, which move
with it.

Children are the targets of the model's one-to-many relationships, and
theirs, recursively (a relationship back to a table already in the family,
and many-to-many ones, are not followed).  The family is listed parents
first: rows are copied in that order and deleted in the reverse one, so
that foreign keys hold at every statement.
"""

from sqlalchemy import inspect, tuple_
from sqlalchemy.orm.interfaces import ONETOMANY

from .exceptions import ArchiveMoveError


class Member:
    """One table of a family: its primary key, and how it hangs from its parent."""

    def __init__(self, mapper, parent=None, link=None):
        self.mapper = mapper
        self.table = mapper.local_table
        self.pk = list(mapper.primary_key)
        self.parent = parent
        # (the parent's column, this table's column referring to it)
        self.link = link

    def __repr__(self):
        return f"<Member {self.table.name}>"

    def key_of(self, row):
        """The primary key of *row* (a mapping), as a tuple."""
        return tuple(row[c.key] for c in self.pk)

    def has_key(self, keys, table=None):
        """``pk IN keys`` (*keys* are tuples)."""
        table = self.table if table is None else table
        columns = [table.c[c.key] for c in self.pk]
        if len(columns) == 1:
            return columns[0].in_([k[0] for k in keys])
        return tuple_(*columns).in_(keys)


def family_of(model):
    """The :class:`Member` list of *model*'s family, parents first."""
    mapper = inspect(model)
    root = Member(mapper)
    members, seen, todo = [root], {root.table}, [root]
    while todo:
        member = todo.pop(0)
        for prop in member.mapper.relationships:
            if prop.direction is not ONETOMANY or prop.secondary is not None:
                continue
            if prop.viewonly or prop.mapper.local_table in seen:
                continue
            pairs = prop.local_remote_pairs
            if len(pairs) != 1:
                raise ArchiveMoveError(
                    f"{mapper.class_.__name__}: the children of {prop} are joined "
                    "on several columns; dbrouter_archive moves children joined "
                    "on one foreign key column"
                )
            child = Member(prop.mapper, member, pairs[0])
            seen.add(child.table)
            members.append(child)
            todo.append(child)
    return members
