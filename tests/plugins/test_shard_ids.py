"""Ids unique across shards: made in-process, carrying their bucket."""

import threading

from dbrouter_shard import Shards
from dbrouter_shard.ids import EPOCH_MS, IdGenerator


def make_shards(buckets=64, strategy="modulo"):
    return Shards([("a", None), ("b", None), ("c", None)], strategy, buckets)


def test_many_threads_make_no_duplicate():
    shards = make_shards()
    made = [[] for _ in range(50)]

    def work(mine):
        for key in range(2000):
            mine.append(shards.new_id(key))

    threads = [threading.Thread(target=work, args=(mine,)) for mine in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [id_ for mine in made for id_ in mine]
    assert len(every) == 100_000
    assert len(set(every)) == len(every)  # 0 duplicates
    assert all(0 < id_ < 2**63 for id_ in every)


def test_an_id_carries_its_keys_bucket_and_so_its_shard():
    for strategy in ("modulo", "hash"):
        shards = make_shards(strategy=strategy)
        for key in (0, 7, 42, 12345, "alice"):
            if strategy == "modulo" and isinstance(key, str):
                continue
            id_ = shards.new_id(key)
            assert id_ % shards.buckets == shards.bucket_of(key)
            assert shards.shard_for_id(id_) == shards.shard_for(key)


def test_256_ids_in_one_millisecond_borrow_the_next_one():
    frozen = (EPOCH_MS + 1000) / 1000
    generator = IdGenerator(buckets=4, clock=lambda: frozen)
    ids = [generator.new_id(1) for _ in range(600)]
    assert len(set(ids)) == 600
    assert ids == sorted(ids)


def test_the_clock_going_back_never_goes_back_in_ids():
    times = iter([10.0, 9.0, 8.0, 10.0])
    generator = IdGenerator(buckets=4, clock=lambda: EPOCH_MS / 1000 + next(times))
    ids = [generator.new_id(0) for _ in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_two_nodes_never_collide():
    frozen = (EPOCH_MS + 5) / 1000
    one = IdGenerator(buckets=8, node=1, clock=lambda: frozen)
    two = IdGenerator(buckets=8, node=2, clock=lambda: frozen)
    assert not {one.new_id(3) for _ in range(200)} & {two.new_id(3) for _ in range(200)}


def test_the_stable_hash_is_crc32_of_the_text():
    import zlib

    shards = make_shards(strategy="hash", buckets=64)
    assert shards.bucket_of("alice") == zlib.crc32(b"alice") % 64
    assert shards.bucket_of(42) == shards.bucket_of("42") == zlib.crc32(b"42") % 64
