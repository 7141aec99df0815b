"""How a shard key becomes a bucket: ``modulo``, ``hash``, or your own.

Keys go to *buckets* (a fixed number, ``dbrouter.shard.buckets``) and
buckets to shards, so that adding a shard later moves whole buckets and
never splits one.  A dotted callable strategy answers the engine name itself.
"""

import zlib

from .exceptions import ShardKeyError

BUILTIN = ("modulo", "hash")


def modulo(key, buckets):
    """``key % buckets`` for whole-number keys (``user_id % N``)."""
    if isinstance(key, bool) or not isinstance(key, int):
        raise ShardKeyError(
            f"shard key {key!r} ({type(key).__name__}) is not a whole number, which "
            "strategy 'modulo' needs; use dbrouter.shard.strategy = hash for other keys"
        )
    return key % buckets


def stable_hash(key, buckets):
    """CRC32 of the key's text form, modulo *buckets*.

    Python's ``hash()`` of a string changes with every process
    (``PYTHONHASHSEED``): rows would move between restarts.  CRC32 of the
    UTF-8 text is the same everywhere, in every language, and so is a key's
    bucket: ``42`` and ``"42"`` share one.
    """
    if key is None:
        raise ShardKeyError("shard key None cannot be hashed to a shard")
    data = key if isinstance(key, bytes) else str(key).encode("utf-8")
    return zlib.crc32(data) % buckets
