"""``Shards``: which engine holds a key, and ids unique across them.

One ``Shards`` per application, made by ``config.add_db_shards`` and found
with :func:`get_shards`.  It never changes after start-up, so every thread
may use it.
"""

from pyramid.exceptions import ConfigurationError

from .exceptions import ShardKeyError
from .ids import IdGenerator, bucket_of_id
from .strategies import modulo, stable_hash

_BUILTIN = {"modulo": modulo, "hash": stable_hash}


class Shards:
    """The shards of one application.

    *shards* is ``[(engine name, buckets or None)]``; without explicit
    buckets, bucket ``b`` lives on shard ``b % len(shards)``.  *strategy* is
    ``"modulo"``, ``"hash"`` or a callable ``(key) -> engine name``.
    """

    def __init__(self, shards, strategy="modulo", buckets=None, id_node=0):
        self.names = tuple(name for name, _spec in shards)
        self.strategy = strategy
        self.buckets = buckets or len(self.names)
        self._bucket_shard = _assign(shards, self.buckets)
        if callable(strategy):
            self._place = strategy
            self._bucket = None
        else:
            self._place = None
            self._bucket = _BUILTIN[strategy]
        self._ids = IdGenerator(self.buckets, id_node)

    def __repr__(self):
        return f"<Shards {' '.join(self.names)} by {self.strategy_name}>"

    @property
    def strategy_name(self):
        if callable(self.strategy):
            return f"{self.strategy.__module__}.{self.strategy.__qualname__}"
        return self.strategy

    def bucket_of(self, key):
        """The bucket of *key* (for a callable strategy: its shard's index)."""
        if self._place is not None:
            return self.names.index(self.shard_for(key))
        return self._bucket(key, self.buckets)

    def shard_for(self, key):
        """The engine name holding *key*, as in
        ``session.using_bind(shards.shard_for(42))``."""
        if key is None:
            raise ShardKeyError("shard key None belongs to no shard")
        if self._place is not None:
            name = self._place(key)
            if name not in self.names:
                raise ShardKeyError(
                    f"strategy {self.strategy_name} placed key {key!r} on {name!r}, "
                    f"which is not a shard; the shards are {', '.join(self.names)}"
                )
            return name
        return self._bucket_shard[self._bucket(key, self.buckets)]

    def shards_for(self, keys):
        """The engine names holding *keys*: one name, or a list in shard order."""
        if len(keys) == 1:
            for key in keys:
                return self.shard_for(key)
        wanted = {self.shard_for(key) for key in keys}
        found = [name for name in self.names if name in wanted]
        return found[0] if len(found) == 1 else found

    def buckets_of(self, name):
        """The buckets shard *name* holds, in order."""
        return [b for b, shard in enumerate(self._bucket_shard) if shard == name]

    def new_id(self, key=None):
        """A new 63-bit id unique across shards, carrying *key*'s bucket.

        Give a row the id of its shard key's bucket (``Post(id=new_id(user_id))``)
        and ``get(Post, id)`` finds its shard from the id alone.
        """
        return self._ids.new_id(self.bucket_of(key) if key is not None else 0)

    def shard_for_id(self, id_):
        """The shard of an id made by :meth:`new_id`."""
        if self._place is not None:
            return self.names[bucket_of_id(id_, self.buckets)]
        return self._bucket_shard[bucket_of_id(id_, self.buckets)]


def _assign(shards, buckets):
    """``[engine name of bucket 0, of bucket 1, ...]``."""
    names = [name for name, _spec in shards]
    if all(spec is None for _n, spec in shards):
        return [names[b % len(names)] for b in range(buckets)]
    owner = {}
    for name, spec in shards:
        for bucket in spec:
            if bucket in owner:
                raise ConfigurationError(
                    f"dbrouter.shard.shards: bucket {bucket} is given to both "
                    f"{owner[bucket]!r} and {name!r}"
                )
            owner[bucket] = name
    missing = [b for b in range(buckets) if b not in owner]
    extra = sorted(b for b in owner if b >= buckets)
    if missing or extra:
        raise ConfigurationError(
            f"dbrouter.shard.shards: buckets 0-{buckets - 1} must each be given to "
            "one shard; missing "
            f"{missing or 'none'}, beyond the last bucket {extra or 'none'}"
        )
    return [owner[b] for b in range(buckets)]
