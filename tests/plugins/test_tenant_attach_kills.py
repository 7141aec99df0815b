"""Two album files written in one transaction, the writer killed (SIGKILL)
at random moments, many times: are both files always all-or-nothing?

The writer (``attach_worker.py``) loops transactions that write the same
counter into both albums; after each kill both files are opened *alone*,
as the application opens an album (SQLite rolls a hot journal back on
open, after checking whether the super-journal it names still exists), and
their counters compared.  Before reopening, the test notes whether the kill
left a journal (it landed inside a COMMIT) or a super-journal (inside the
multi-file commit itself, between its start and its commit point).

With the albums ATTACHed to one connection in rollback-journal mode SQLite
commits both files atomically (https://www.sqlite.org/atomiccommit.html,
section 5): no kill may tear them apart.  The controls show that the test
can fail: two connections committed one after the other, and WAL mode
(no super-journal), leave albums that disagree.
"""

import glob
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from attach_worker import album, create_albums

HERE = Path(__file__).parent
ALBUMS = ["a", "b"]


def marks(root, key):
    """The counters of one album, opened alone (a hot journal is rolled
    back, or discarded if its super-journal is gone, by this open)."""
    conn = sqlite3.connect(f"file:{album(root, key)}?mode=rw", uri=True)
    try:
        return {n for (n,) in conn.execute("SELECT n FROM marks")}
    finally:
        conn.close()


def leftovers(root):
    """Album journals and super-journals (the hub's, hidden files included),
    with their size and modification time: what is new after a kill was
    left by it."""
    paths = [e.path for e in os.scandir(root) if "-mj" in e.name]
    paths += glob.glob(os.path.join(root, "*", "*-journal"))
    found = {}
    for path in paths:
        st = os.stat(path)
        if st.st_size:
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def env():
    paths = [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def kill_rounds(root, how, rounds, seed, max_delay=0.06):
    """Fork the writer *rounds* times, kill it after a random delay; return
    the figures of the run."""
    rng = random.Random(seed)
    figures = {"kills": 0, "mid_commit": 0, "super_journal": 0, "divergent": 0}
    start = 0
    server = subprocess.Popen(
        [sys.executable, str(HERE / "attach_worker.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env(),
    )
    try:
        for _ in range(rounds):
            before = leftovers(root)
            job = {"how": how, "root": str(root), "albums": ALBUMS, "start": start}
            server.stdin.write(json.dumps(job).encode() + b"\n")
            server.stdin.flush()
            ready = server.stdout.readline().split()
            assert ready[:1] == [b"ready"], f"the writer did not start: {ready!r}"
            # a random moment of the loop (the delay is not asserted on)
            time.sleep(rng.uniform(0, max_delay))
            os.kill(int(ready[1]), signal.SIGKILL)
            assert server.stdout.readline() == b"done\n"
            figures["kills"] += 1
            # left by this kill (SQLite leaves orphan super-journals, and
            # journals that are no longer hot, until a later write)
            left = [p for p, st in leftovers(root).items() if before.get(p) != st]
            figures["mid_commit"] += bool(left)
            figures["super_journal"] += any("-mj" in os.path.basename(p) for p in left)
            seen = [marks(root, key) for key in ALBUMS]
            if seen[0] != seen[1]:
                figures["divergent"] += 1
            start = max(max(s, default=0) for s in seen)
    finally:
        server.stdin.close()
        server.kill()
        server.wait()
        server.stdout.close()
    figures["committed"] = start
    return figures


@pytest.fixture
def albums_root(tmp_path):
    root = tmp_path / "albums"
    root.mkdir()
    return root


def test_attached_albums_are_all_or_nothing_under_kills(albums_root):
    create_albums(str(albums_root), ALBUMS)
    figures = kill_rounds(albums_root, "attach", rounds=200, seed=11)
    print("attach:", figures)
    assert figures["divergent"] == 0, figures
    # the kills did land inside commits, super-journal phase included
    assert figures["mid_commit"] > 0 and figures["super_journal"] > 0, figures
    assert figures["committed"] > figures["kills"]


def test_two_connections_committed_in_turn_do_diverge(albums_root):
    """The control: the same writes, one connection per album."""
    create_albums(str(albums_root), ALBUMS)
    figures = kill_rounds(albums_root, "separate", rounds=60, seed=12)
    print("separate:", figures)
    assert figures["divergent"] > 0, figures


def test_attached_albums_in_wal_mode_do_diverge(albums_root):
    """The control: WAL has no super-journal, each file commits alone."""
    create_albums(str(albums_root), ALBUMS, wal=True)
    figures = kill_rounds(albums_root, "wal", rounds=60, seed=13)
    print("wal:", figures)
    assert figures["divergent"] > 0, figures


def test_albums_written_through_the_plugin_are_all_or_nothing_under_kills(
    albums_root,
):
    """The same, through pyramid_dbrouter with dbrouter.tenant.attach = true:
    one session_scope writes tenant:a and tenant:b."""
    create_albums(str(albums_root), ALBUMS)
    figures = kill_rounds(albums_root, "plugin", rounds=200, seed=14)
    print("plugin:", figures)
    assert figures["divergent"] == 0, figures
    assert figures["mid_commit"] > 0 and figures["super_journal"] > 0, figures
