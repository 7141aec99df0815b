"""``ShardRouter``: the router that places sharded models on their shards.

A model is sharded when it names its key, ``__shard_key__ = "user_id"``, or
says ``__shard_key__ = FOLLOW_PARENT`` when its rows live with a parent's
(a child without the key: its new objects follow the objects they are
related to, by the core's instance hint).  Every other model is left to the
rest of the router chain.

* a new object: the shard of its key; no key is a :class:`ShardKeyError`
  naming the model and the key, raised while the flush is planned, before
  any SQL;
* ``get()``: straight to one shard when the primary key is the shard key, or
  is an id made by ``Shards.new_id`` (``__shard_ids__ = True``);
* a statement whose WHERE pins the key (``==``, ``IN``, through ``AND``):
  only those shards, found by the core's :func:`~pyramid_dbrouter.where_values`;
* any other read: every shard, through the core's fan-out (merged, ordered
  and limited as if one database answered), or a :class:`ShardKeyError`
  with ``on_missing_key = "error"``;
* a bulk UPDATE or DELETE: the shards its WHERE pins, else every shard (a
  list: the core runs it on each, in the session's transaction, committed
  together), or a :class:`ShardKeyError` with ``on_missing_key = "error"``;
* any other write that names no object (a Core INSERT without the key,
  ``get_bind(User)``): a :class:`ShardKeyError`.
"""

from sqlalchemy import inspect
from sqlalchemy.orm.interfaces import MANYTOONE

from pyramid_dbrouter import bind_of, where_values

from .exceptions import ShardKeyError


class _FollowParent:
    def __repr__(self):
        return "FOLLOW_PARENT"


#: ``__shard_key__ = FOLLOW_PARENT``: rows live on their parent's shard
FOLLOW_PARENT = _FollowParent()


class _Placement:
    """What the router needs to know of one sharded model, found once."""

    __slots__ = ("key", "column", "pk_index", "by_id", "parents")

    def __init__(self, model):
        self.key = model.__shard_key__
        mapper = inspect(model)
        self.column = None
        self.pk_index = None
        if self.key is not FOLLOW_PARENT:
            prop = mapper.get_property(self.key)
            self.column = prop.columns[0]
            primary = list(mapper.primary_key)
            for index, column in enumerate(primary):
                if column is self.column:
                    self.pk_index = index
        self.by_id = bool(getattr(model, "__shard_ids__", False))
        # many-to-one relationships that fill the key in from a parent
        self.parents = [
            prop
            for prop in mapper.relationships
            if prop.direction is MANYTOONE and self.column in prop.local_columns
        ]


class ShardRouter:
    """Routes models with ``__shard_key__`` over *shards* (a :class:`Shards`)."""

    def __init__(self, shards, on_missing_key="fanout"):
        self.shards = shards
        self.on_missing_key = on_missing_key
        # per model, found on first use; a dict assignment is atomic, and two
        # threads finding the same placement at once find equal ones
        self._placements = {}

    def _placement(self, model):
        if model is None or getattr(model, "__shard_key__", None) is None:
            return None
        found = self._placements.get(model)
        if found is None:
            found = self._placements[model] = _Placement(model)
        return found

    def db_for_read(self, model, **hints):
        placement = self._placement(model)
        if placement is None:
            return None
        identity = hints.get("identity")
        if identity is not None:
            name = self._for_identity(placement, identity)
        else:
            name = self._for_clause(placement, hints.get("clause"))
        if name is not None:
            return name
        if self.on_missing_key == "error":
            raise ShardKeyError(
                f"a read of {model.__name__} does not pin its shard key "
                f"{_key_name(placement)} and would read every shard "
                f"({', '.join(self.shards.names)}); dbrouter.shard.on_missing_key = "
                "error refuses it. Filter on the key (== or IN), or read one shard "
                "with session.using_bind(shards.shard_for(key))"
            )
        return list(self.shards.names)

    def db_for_write(self, model, **hints):
        placement = self._placement(model)
        if placement is None:
            return None
        instance = hints.get("instance")
        if instance is not None:
            if placement.key is FOLLOW_PARENT:
                return None  # the core's instance hint: with its related objects
            key = getattr(instance, placement.key, None)
            if key is None:
                # Post(user=user): the key is copied from the parent at flush,
                # after routing; until then the parent says where it goes
                name = self._parent_shard(instance, placement)
                if name is not None:
                    return name
                raise ShardKeyError(
                    f"{model.__name__}.{placement.key} is None: a new "
                    f"{model.__name__} is written to the shard of its "
                    f"{placement.key}; set it before the flush (nothing was sent "
                    "to any database)"
                )
            return self.shards.shard_for(key)
        clause = hints.get("clause")
        name = self._for_clause(placement, clause)
        bulk = clause is not None and (clause.is_update or clause.is_delete)
        if isinstance(name, str) or (bulk and name is not None):
            return name  # the pinned shards: a bulk write runs on each
        if not bulk:
            raise ShardKeyError(
                f"a write of {model.__name__} with no object and no shard key "
                f"{_key_name(placement)} pinned (an INSERT without it, get_bind) "
                "belongs to no shard; run it on one with "
                "session.using_bind(shards.shard_for(key))"
            )
        if self.on_missing_key == "error":
            raise ShardKeyError(
                f"a bulk {'UPDATE' if clause.is_update else 'DELETE'} of "
                f"{model.__name__} does not pin its shard key {_key_name(placement)} "
                f"and would run on every shard ({', '.join(self.shards.names)}); "
                "dbrouter.shard.on_missing_key = error refuses it. Filter on the "
                "key (== or IN), or run it on one shard with "
                "session.using_bind(shards.shard_for(key))"
            )
        return list(self.shards.names)

    def allow_migrate(self, db, model, **hints):
        if self._placement(model if isinstance(model, type) else None) is None:
            return None
        return db in self.shards.names

    def _parent_shard(self, instance, placement):
        state = inspect(instance)
        for prop in placement.parents:
            parent = state.dict.get(prop.key)
            if parent is None:
                continue
            name = bind_of(parent)
            if name is not None:
                return name
            parent_placement = self._placement(type(parent))
            if parent_placement is not None and parent_placement.column is not None:
                return self.db_for_write(type(parent), instance=parent)
        return None

    def _for_identity(self, placement, identity):
        if placement.by_id or placement.pk_index is not None:
            if isinstance(identity, dict):
                return None  # a dict names attributes: leave it to the fan-out
            values = identity if isinstance(identity, tuple | list) else (identity,)
            if placement.pk_index is not None:
                return self.shards.shard_for(values[placement.pk_index])
            return self.shards.shard_for_id(values[0])
        return None

    def _for_clause(self, placement, clause):
        if placement.column is None or clause is None:
            return None
        values = where_values(clause, placement.column)
        if values is None:
            return None
        if not values:
            # nothing can match (key == 1 AND key == 2): one shard says so
            return self.shards.names[0]
        return self.shards.shards_for(values)


def _key_name(placement):
    if placement.key is FOLLOW_PARENT:
        return "(it follows its parent's shard)"
    return repr(placement.key)
