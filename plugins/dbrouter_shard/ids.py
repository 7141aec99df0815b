"""Ids unique across shards, made without asking any database.

An id is a positive 63-bit integer (it fits a signed ``BIGINT``)::

    id = ((milliseconds << 12) | (node << 8) | sequence) * buckets + bucket

* ``milliseconds`` since 2025-01-01 UTC (41 bits: until 2094);
* ``node``, 0-15: ``dbrouter.shard.id_node``, one per process that makes ids
  at the same time (a worker's index), so that two processes never collide;
* ``sequence``, 0-255: ids made in the same millisecond by one process;
* ``bucket``: the bucket of the row's shard key, so that ``id % buckets``
  names the bucket and ``get(Model, id)`` goes straight to its shard.

Within one process a lock makes each (millisecond, sequence) pair once, for
every thread; when 256 ids were made in one millisecond the generator
borrows the next millisecond instead of sleeping, and the clock going back
never goes back in ids.  Ids are roughly time-ordered, not gapless.
"""

import threading
import time

EPOCH_MS = 1735689600000  # 2025-01-01T00:00:00Z
NODE_BITS = 4
SEQUENCE_BITS = 8
MAX_NODE = (1 << NODE_BITS) - 1
#: ``(2**53) * MAX_BUCKETS`` stays below ``2**63``
MAX_BUCKETS = 1024


class IdGenerator:
    """Makes ids for one application; thread-safe."""

    def __init__(self, buckets, node=0, clock=time.time):
        self.buckets = buckets
        self.node = node
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def _next_high(self):
        with self._lock:
            now = int(self._clock() * 1000) - EPOCH_MS
            if now > self._last_ms:
                self._last_ms, self._sequence = now, 0
            else:
                self._sequence += 1
                if self._sequence >> SEQUENCE_BITS:
                    self._last_ms, self._sequence = self._last_ms + 1, 0
            return (
                (self._last_ms << (NODE_BITS + SEQUENCE_BITS))
                | (self.node << SEQUENCE_BITS)
                | self._sequence
            )

    def new_id(self, bucket):
        """A new id that carries *bucket* (``id % buckets == bucket``)."""
        return self._next_high() * self.buckets + bucket


def bucket_of_id(id_, buckets):
    """The bucket an id made by :class:`IdGenerator` carries."""
    return id_ % buckets
