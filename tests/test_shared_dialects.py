"""Engines made on demand share their server's dialect and compiled cache,
and nothing else: each URL has its own pool, connections and rows."""

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, event, make_url, select
from sqlalchemy.orm import Session

from pyramid_dbrouter import EngineRegistry, SharedDialects, get_session_factory
from pyramid_dbrouter.engines import RETIRING_BATCH
from pyramid_dbrouter.shared_dialects import share_key
from sample import Album, Base


def make_files(tmp_path, keys):
    template = tmp_path / "template.db"
    engine = create_engine(f"sqlite:///{template}")
    Base.metadata.create_all(engine)
    engine.dispose()
    for key in keys:
        (tmp_path / f"{key}.db").write_bytes(template.read_bytes())


def file_factory(tmp_path):
    return lambda key, settings: f"sqlite:///{tmp_path / key}.db"


def compiled_of(engine, statement):
    """The Compiled object *engine* ran *statement* with."""
    seen = []

    def note(conn, cursor, sql, params, context, executemany):
        seen.append(context.compiled)

    event.listen(engine, "before_cursor_execute", note)
    try:
        with Session(engine) as session:
            session.execute(statement).all()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    (compiled,) = seen
    return compiled


def test_a_statement_compiled_for_one_tenant_is_reused_for_the_next(tmp_path):
    make_files(tmp_path, ["a", "b", "c"])
    engines = EngineRegistry()
    engines.add_factory("tenant", file_factory(tmp_path))
    a = engines.get("tenant:a")
    statement = select(Album).where(Album.title == "x")
    first = compiled_of(a, statement)
    b, c = engines.get("tenant:b"), engines.get("tenant:c")
    assert b.dialect is a.dialect and c.dialect is a.dialect
    assert compiled_of(b, statement) is first
    assert compiled_of(c, statement) is first
    # and a statement first compiled for c is found for a
    other = select(Album.id).where(Album.id > 5)
    assert compiled_of(a, other) is compiled_of(c, other)
    engines.dispose()


def test_each_url_keeps_its_own_pool_and_rows(tmp_path):
    make_files(tmp_path, ["a", "b"])
    engines = EngineRegistry()
    engines.add_factory("tenant", file_factory(tmp_path))
    a = engines.get("tenant:a")
    with a.connect():
        pass  # the first engine's dialect is initialized: the next share it
    b = engines.get("tenant:b")
    assert b.dialect is a.dialect and b.pool is not a.pool
    factory = get_session_factory(engines)
    with factory() as session:
        session.using_bind("tenant:b").add(Album(id=1, title="only in b"))
        session.commit()
    with sqlite3.connect(tmp_path / "a.db") as raw:
        assert raw.execute("SELECT count(*) FROM albums").fetchone() == (0,)
    with sqlite3.connect(tmp_path / "b.db") as raw:
        assert raw.execute("SELECT title FROM albums").fetchall() == [("only in b",)]
    engines.dispose()


def test_an_engine_made_before_the_first_has_connected_does_not_share(tmp_path):
    # the shared dialect must be initialized (server version, default
    # schema) before another engine uses it; the first made alone to connect
    # gives its dialect (the first made may never connect)
    make_files(tmp_path, ["a", "b", "c"])
    shared = SharedDialects()
    a = shared.engine(f"sqlite:///{tmp_path / 'a.db'}")
    b = shared.engine(f"sqlite:///{tmp_path / 'b.db'}")
    assert b.dialect is not a.dialect
    with b.connect():  # b connects first: its dialect is the one shared
        pass
    with a.connect():
        pass
    c = shared.engine(f"sqlite:///{tmp_path / 'c.db'}")
    assert c.dialect is b.dialect
    with Session(c) as session:
        assert session.scalars(select(Album)).all() == []
    for engine in (a, b, c):
        engine.dispose()


def test_only_urls_of_one_server_share_a_dialect():
    base = make_url("postgresql+psycopg2://app:pw@db1:5432/tenant_a")
    assert share_key(base) == share_key(base.set(database="tenant_b"))
    for other in (
        base.set(host="db2"),
        base.set(port=5433),
        base.set(username="other"),
        base.set(password="other"),
        base.set(drivername="postgresql+psycopg"),
        base.update_query_dict({"sslmode": "require"}),
    ):
        assert share_key(other) != share_key(base), other
    # a create_engine plugin may change anything: never shared
    assert share_key(base.update_query_dict({"plugin": "x"})) is None


def test_a_factory_of_several_dialects_shares_per_dialect(tmp_path):
    make_files(tmp_path, ["a", "b"])

    def factory(key, settings):
        if key.startswith("mem"):
            return "sqlite+pysqlite:///:memory:"
        return f"sqlite:///{tmp_path / key}.db"

    engines = EngineRegistry()
    engines.add_factory("tenant", factory)
    a = engines.get("tenant:a")
    mem1 = engines.get("tenant:mem1")
    for engine in (a, mem1):
        with engine.connect():
            pass
    b, mem2 = engines.get("tenant:b"), engines.get("tenant:mem2")
    assert b.dialect is a.dialect
    assert mem2.dialect is mem1.dialect and mem1.dialect is not a.dialect
    Base.metadata.create_all(mem2)
    with Session(mem2) as session:
        assert session.scalars(select(Album)).all() == []
    with Session(b) as session:
        assert session.scalars(select(Album)).all() == []
    engines.dispose()


def wait_for(condition, seconds=30):
    """Poll until *condition()* (evicted engines are retired on a worker)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


def test_an_evicted_engine_is_closed_and_the_others_keep_working(tmp_path):
    others = [f"k{n}" for n in range(RETIRING_BATCH + 1)]
    make_files(tmp_path, ["a", "b", "c", *others])
    engines = EngineRegistry(max_dynamic_engines=2)
    engines.add_factory("tenant", file_factory(tmp_path))
    factory = get_session_factory(engines)

    def titles(name):
        with factory() as session:
            return session.using_bind(name).scalars(select(Album.title)).all()

    a = engines.get("tenant:a")
    assert titles("tenant:a") == [] and titles("tenant:b") == []
    assert a.pool.checkedin() == 1
    assert titles("tenant:c") == []  # evicts a
    assert engines.open_dynamic_names() == ["tenant:b", "tenant:c"]
    for key in others:  # evicted engines are closed a batch at a time
        assert titles(f"tenant:{key}") == []
    wait_for(lambda: a.pool.checkedin() == 0)
    b = engines.get("tenant:b")  # made again: the first b was evicted
    # the dialect and cache a shared live on with the others
    assert titles("tenant:b") == [] and titles("tenant:c") == []
    assert b.dialect is a.dialect
    # a session that still held the evicted engine can use it
    with Session(a) as session:
        assert session.scalars(select(Album)).all() == []
    assert titles("tenant:a") == []  # made anew, sharing again
    assert engines.get("tenant:a") is not a
    assert engines.get("tenant:a").dialect is a.dialect
    engines.dispose()


def test_rows_go_to_their_own_file_from_8_threads_with_a_small_lru(tmp_path):
    keys = [f"k{n:02d}" for n in range(24)]
    make_files(tmp_path, keys)
    engines = EngineRegistry(max_dynamic_engines=4)
    engines.add_factory("tenant", file_factory(tmp_path))
    factory = get_session_factory(engines)
    wrong = []
    lock = threading.Lock()

    def work(n):
        key = keys[n % len(keys)]
        with factory() as session:
            session.using_bind(f"tenant:{key}").add(Album(id=n, title=key))
            session.commit()
            seen = session.using_bind(f"tenant:{key}").scalars(select(Album.title))
            if set(seen) != {key}:
                with lock:
                    wrong.append((key, n))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(480)))
    assert wrong == []
    for key in keys:
        with sqlite3.connect(tmp_path / f"{key}.db") as raw:
            rows = raw.execute("SELECT DISTINCT title FROM albums").fetchall()
            count = raw.execute("SELECT count(*) FROM albums").fetchone()[0]
        assert rows == [(key,)] and count == 20
    engines.dispose()
