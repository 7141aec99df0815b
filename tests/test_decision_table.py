"""The decision table is created once, however many first commits race.

A fresh pair of PostgreSQL databases; two processes of sixteen threads each
commit their first two-phase transaction at the same moment.  PostgreSQL's
``CREATE TABLE IF NOT EXISTS`` is not safe against itself: unguarded, some
of those requests fail with ``duplicate key value violates unique constraint
"pg_type_typname_nsp_index"``.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twophase_app import count, create_tables

pytestmark = pytest.mark.servers

TESTS = Path(__file__).parent
THREADS = 16


def test_first_two_phase_commits_of_two_processes_at_once(
    pg_db, pg_db2, pg_primary, pg_second
):
    engines = {"default": pg_db, "pg2": pg_db2}
    create_tables(engines.values())  # the application's tables, not ours
    start_at = time.time() + 4  # both processes have imported and configured
    env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{TESTS / 'apps'}")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "apps" / "first_use_worker.py"),
                json.dumps(
                    {
                        "engines": engines,
                        "threads": THREADS,
                        "start_at": start_at,
                        "name": f"p{n}",
                    }
                ),
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for n in range(2)
    ]
    results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert [r["errors"] for r in results] == [[], []]
    assert [r["committed"] for r in results] == [THREADS, THREADS]
    assert count(pg_db) == count(pg_db2) == 2 * THREADS
    left = pg_primary.prepared_transactions() + pg_second.prepared_transactions()
    assert [gid for gid in left if gid.startswith("dbr:")] == []
