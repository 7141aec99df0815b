"""Fan-out over 8 PostgreSQL databases of 1,000,000 rows each: rows fetched
and peak memory, against one database.

* ``ORDER BY value, id LIMIT 10`` (ORM objects): the LIMIT is pushed down, so
  each database sends at most 10 rows -- counted here from each cursor's
  ``rowcount`` -- and the merge keeps 10 of the 80;
* ``ORDER BY value, id`` streamed with ``yield_per(1000)`` (columns), the
  first 200,000 merged rows read: each database streams through a
  server-side cursor and the k-way merge holds one batch per database.

Each case runs in a fresh Python process, whose peak resident set size
(``ru_maxrss``) is reported next to the same read from one database.

``.venv/bin/python benchmarks/fanout_memory.py [--rows N] [--json PATH]``.
"""

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, event, select, text

import _bench
from fanout_read import Base, Item, shard_names

SHARDS = 8
STREAMED = 200_000
LIMIT = 10


def fill(url, shard, rows):
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    first = shard * rows + 1
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO fanout_item (id, name, value) SELECT g, 'item ' || g, "
                "(g * 7919) % 100003 FROM generate_series(CAST(:a AS bigint), "
                "CAST(:b AS bigint)) AS g"
            ),
            {"a": first, "b": first + rows - 1},
        )
        conn.execute(text("ANALYZE fanout_item"))
    engine.dispose()


def child(mode, urls):
    """In a fresh process: one read; print what it fetched and its peak RSS."""
    from pyramid_dbrouter import get_session_factory

    engines = {
        name: create_engine(url)
        for name, url in zip(shard_names(len(urls)), urls, strict=True)
    }
    fetched = {}

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and cursor.rowcount >= 0:
            name = conn.engine.url.database
            fetched[name] = fetched.get(name, 0) + cursor.rowcount

    for engine in engines.values():
        event.listen(engine, "after_cursor_execute", count)
    names = list(engines)

    class Router:
        def db_for_read(self, model, **hints):
            return names

    session = get_session_factory(engines, [Router()])()
    began = time.perf_counter()
    if mode.endswith("limit"):
        statement = select(Item).order_by(Item.value, Item.id).limit(LIMIT)
        got = len(session.scalars(statement).all())
    else:
        statement = (
            select(Item.id, Item.value)
            .order_by(Item.value, Item.id)
            .execution_options(yield_per=1000)
        )
        got = sum(1 for _ in itertools.islice(session.execute(statement), STREAMED))
    elapsed = time.perf_counter() - began
    session.rollback()
    print(
        json.dumps(
            {
                "rows": got,
                "fetched_per_database": fetched,
                "fetched": sum(fetched.values()) if mode.endswith("limit") else None,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
                "seconds": elapsed,
            }
        )
    )


CASES = (
    ("ORDER BY ... LIMIT 10 (objects)", "limit"),
    (f"ORDER BY ..., yield_per(1000), first {STREAMED:,} rows", "stream"),
)


def run(postgres, rows=1_000_000):
    began = time.perf_counter()
    urls = []
    _bench.log(f"  filling {SHARDS} databases of {rows:,} rows: ")
    for shard in range(SHARDS):
        url = postgres.url(postgres.create_database())
        fill(url, shard, rows)
        urls.append(url)
        _bench.log(".")
    _bench.log("\n")
    results = {}
    for label, mode in CASES:
        for who, targets in (
            ("one database", urls[:1]),
            (f"fan-out over {SHARDS}", urls),
        ):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, *targets],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).parent,
            )
            results[f"{label} | {who}"] = json.loads(
                out.stdout.strip().splitlines()[-1]
            )
    return {
        "rows_per_database": rows,
        "elapsed_s": time.perf_counter() - began,
        "cases": results,
    }


def table(result):
    lines = [
        "| read | over | rows returned | rows fetched (per database) "
        "| peak RSS MB | seconds |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for key, row in result["cases"].items():
        label, who = key.split(" | ")
        each = ", ".join(str(v) for v in row["fetched_per_database"].values())
        fetched = (
            f"{row['fetched']} ({each})"
            if row["fetched"] is not None
            else "streamed (server-side cursors)"
        )
        lines.append(
            f"| {label} | {who} | {row['rows']:,} | {fetched} "
            f"| {row['peak_rss_mb']:.0f} | {row['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    cluster = _bench.start_postgres("bench-fanout-memory")
    try:
        result = run(cluster, args.rows)
    finally:
        _bench.stop_postgres(cluster)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
