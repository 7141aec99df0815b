"""A writer of two album files, looping until it is killed (SIGKILL).

Run as a subprocess (tests/ and tests/plugins on the Python path)::

    python tests/plugins/attach_worker.py

it reads one JSON job a line on its standard input, such as ``{"how":
"attach", "root": ROOT, "albums": ["a", "b"], "start": 0}``, and forks a
writer for it (so that each of many kills does not pay Python's start-up
and imports); the writer prints ``ready PID`` once its first transaction
committed, then loops until it is killed; then the server prints ``done``
and reads the next job.

Every transaction writes the same counter into ``marks`` of both albums
(ROOT/KEY/album.sqlite) and rewrites their ``pad`` rows, so that the COMMIT
has many pages to journal and write: a kill at a random moment often lands
inside it.  ``how`` is

* ``attach``: one sqlite3 connection to ROOT/hub.sqlite with both albums
  ATTACHed, rollback journal, synchronous=FULL: one COMMIT for both files;
* ``separate``: one connection per album, committed one after the other
  (the negative control: a kill between the two commits tears them apart);
* ``wal``: as ``attach``, with the albums in WAL mode, where SQLite commits
  each attached file on its own (no super-journal);
* ``plugin``: through pyramid_dbrouter with ``dbrouter.tenant.attach =
  true``: one ``session_scope`` writing ``tenant:a`` and ``tenant:b``.

The server itself never opens a database: the writer it forks opens its
own connections.
"""

import json
import os
import sqlite3
import sys

PAD_ROWS = 64
PAD_BYTES = 4000


def album(root, key):
    return os.path.join(root, key, "album.sqlite")


def create_albums(root, keys, wal=False):
    """The albums' folders and tables (the test calls it before the worker)."""
    for key in keys:
        os.makedirs(os.path.join(root, key), exist_ok=True)
        conn = sqlite3.connect(album(root, key))
        conn.execute("PRAGMA journal_mode=" + ("WAL" if wal else "DELETE"))
        conn.execute("CREATE TABLE marks (n INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE pad (id INTEGER PRIMARY KEY, b BLOB)")
        conn.executemany(
            "INSERT INTO pad VALUES (?, zeroblob(?))",
            [(i, PAD_BYTES) for i in range(PAD_ROWS)],
        )
        conn.commit()
        conn.close()


def write_sql(conn, schema, n):
    conn.execute(f"INSERT INTO {schema}.marks VALUES (?)", (n,))
    conn.execute(f"UPDATE {schema}.pad SET b = randomblob({PAD_BYTES})")


def loop_sqlite(job):
    root, keys = job["root"], job["albums"]
    if job["how"] == "separate":
        conns = [sqlite3.connect(album(root, k)) for k in keys]
        for conn in conns:
            conn.execute("PRAGMA synchronous=FULL")
        targets = [(conn, "main") for conn in conns]
    else:
        hub = sqlite3.connect(os.path.join(root, "hub.sqlite"))
        hub.execute("PRAGMA journal_mode=DELETE")
        for key in keys:
            hub.execute("ATTACH DATABASE ? AS ?", (album(root, key), "t_" + key))
            hub.execute(f"PRAGMA t_{key}.synchronous=FULL")
        hub.execute("PRAGMA synchronous=FULL")
        targets = [(hub, "t_" + k) for k in keys]
    n = job.get("start", 0)
    while True:
        n += 1
        for conn, schema in targets:
            write_sql(conn, schema, n)
        for conn in dict.fromkeys(conn for conn, _ in targets):
            conn.commit()
        ready(n, job)


def ready(n, job):
    if n == job.get("start", 0) + 1:
        print("ready", os.getpid(), flush=True)


def plugin_app(root):
    """The album application (its start-up opens no database)."""
    from tenant_app import make_app

    return make_app(
        {
            "sqlalchemy.url": "sqlite:///" + os.path.join(root, "..", "shared.sqlite"),
            "dbrouter.tenant.mode": "sqlite-folder",
            "dbrouter.tenant.root": root,
            "dbrouter.tenant.attach": "true",
        }
    )


def loop_plugin(job, app):
    from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, func

    from pyramid_dbrouter import session_scope

    keys = job["albums"]
    # Core tables: the tenant's schema_translate_map names their album
    # (textual SQL is not translated)
    tables = MetaData()
    marks = Table("marks", tables, Column("n", Integer, primary_key=True))
    pad = Table(
        "pad", tables, Column("id", Integer, primary_key=True), Column("b", LargeBinary)
    )
    n = job.get("start", 0)
    while True:
        n += 1
        with session_scope(app.registry) as session:
            for key in keys:
                bound = session.using_bind("tenant:" + key)
                bound.execute(marks.insert().values(n=n))
                bound.execute(pad.update().values(b=func.randomblob(PAD_BYTES)))
        ready(n, job)


def serve(lines):
    apps = {}
    for line in lines:
        job = json.loads(line)
        if job["how"] == "plugin" and job["root"] not in apps:
            apps[job["root"]] = plugin_app(job["root"])
        pid = os.fork()
        if pid == 0:
            try:
                if job["how"] == "plugin":
                    loop_plugin(job, apps[job["root"]])
                else:
                    loop_sqlite(job)
            finally:
                os._exit(1)  # the loop ended by an error (printed above)
        os.waitpid(pid, 0)
        print("done", flush=True)


if __name__ == "__main__":
    serve(sys.stdin)
