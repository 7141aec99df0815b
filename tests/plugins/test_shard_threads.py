"""The seed's case: users spread over N databases by id, from many threads.

100 threads, each with its own ``session_scope``, write and read back 100
users each; then a connection of its own to each shard checks that every
row is on the shard its key names.  On 10 SQLite files, and on 4 databases
of the MariaDB service.
"""

import collections
import threading

import pytest
from shard_models import User, make_app
from sqlalchemy import create_engine, select, text

from dbrouter_shard import get_shards
from pyramid_dbrouter import session_scope

THREADS = 100
USERS = 100


@pytest.fixture
def sqlite_shards(tmp_path):
    # 100 writers share 10 files: on a loaded machine a writer may wait for a
    # file's lock longer than pysqlite's 5 s default
    return {
        f"shard{i}": f"sqlite:///{tmp_path / f'shard{i}.db'}?timeout=60"
        for i in range(10)
    }


@pytest.fixture
def mariadb_shards(mariadb):
    names = [mariadb.create_database() for _ in range(4)]
    yield {f"shard{i}": mariadb.url(name) for i, name in enumerate(names)}
    for name in names:
        mariadb.kill_connections(name)
        mariadb.drop_database(name)


def write_and_read(registry, first_id):
    """One thread's work: its users, one transaction per shard, then read back."""
    shards = get_shards(registry)
    ids = range(first_id, first_id + USERS)
    by_shard = collections.defaultdict(list)
    for id_ in ids:
        by_shard[shards.shard_for(id_)].append(id_)
    for mine in by_shard.values():
        with session_scope(registry) as session:
            session.add_all(User(id=id_, name=f"user {id_}") for id_ in mine)
    with session_scope(registry) as session:
        found = session.execute(
            select(User.id, User.name).where(User.id.in_(list(ids))).order_by(User.id)
        ).all()
    assert found == [(id_, f"user {id_}") for id_ in ids]


@pytest.mark.parametrize("topology", ["sqlite_shards", "mariadb_shards"])
def test_a_hundred_threads_a_hundred_users_each(request, tmp_path, topology):
    urls = request.getfixturevalue(topology)
    settings = {"sqlalchemy.url": f"sqlite:///{tmp_path / 'default.db'}"}
    for name, url in urls.items():
        settings[f"sqlalchemy.{name}.url"] = url
    settings["dbrouter.shard.shards"] = " ".join(urls)
    registry = make_app(settings)

    errors = []

    def work(thread_index):
        try:
            write_and_read(registry, thread_index * USERS)
        except BaseException as exc:  # noqa: BLE001 - counted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    shards = get_shards(registry)
    total = 0
    for name, url in urls.items():
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                ids = conn.execute(text("SELECT id FROM shard_users")).scalars().all()
        finally:
            engine.dispose()
        assert ids, f"{name} holds no user"
        assert {shards.shard_for(id_) for id_ in ids} == {name}
        total += len(ids)
    assert total == THREADS * USERS
