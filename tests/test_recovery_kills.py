"""A process killed with SIGKILL in the middle of a two-phase commit, then
``dbrouter recover``.

The request runs in a subprocess (tests/apps/fault_worker.py) that dies at a
chosen point of its commit, as in an OOM kill: no ``finally``, no polite
disconnect.  Whatever the point, recovery leaves the row in every database
or in none, as the decision row says (recovery_scenarios.py lists the
points, twophase_fixtures.assert_all_or_nothing checks the ending).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyramid_dbrouter.checkpoints import Checkpoint
from recovery_scenarios import CHANGED_NOTHING_POINTS, KILL_RUNS, PG_MARIA
from twophase_fixtures import PREFIX, database_of

pytestmark = pytest.mark.servers

TESTS = Path(__file__).parent
WORKER_TIMEOUT = 60


def run_worker(engines, note, point, **more):
    """Run tests/apps/fault_worker.py; its return code and last JSON line."""
    job = {
        "engines": engines,
        "note": note,
        "kill_at": point.at[0].value,
        "engine": point.at[1],
        "settings": {"dbrouter.xid_prefix": PREFIX},
        **more,
    }
    path = os.pathsep.join([str(TESTS), str(TESTS / "apps")])
    proc = subprocess.run(
        [sys.executable, str(TESTS / "apps" / "fault_worker.py"), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": path},
    )
    lines = proc.stdout.strip().splitlines()
    said = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == -9, (
        f"the worker was not killed at {point.at} "
        f"(exit {proc.returncode}): {proc.stdout}{proc.stderr}"
    )
    assert (Checkpoint(said["killed_at"]), said["engine"]) == point.at
    return said["gtrid"]


def wait_disconnected(maria, dbname):
    """Wait until no connection uses *dbname*: until MariaDB has noticed that
    a client died, its branch stays attached to the dead client's connection
    and cannot be finished from another one."""
    deadline = time.monotonic() + 10
    while maria.execute(
        "SELECT 1 FROM information_schema.processlist WHERE db = %s", (dbname,)
    ):
        assert time.monotonic() < deadline, f"connections to {dbname} stayed"
        time.sleep(0.01)


def test_the_suite_runs_at_least_36_kill_scenarios():
    assert len(KILL_RUNS) >= 36


@pytest.mark.parametrize(("topology", "point", "attempt"), KILL_RUNS)
def test_a_process_killed_mid_commit_is_recovered_all_or_nothing(
    topology, point, attempt, databases, assert_all_or_nothing
):
    """SIGKILL at a point of the commit, then ``dbrouter recover``: the row is
    in every database or in none, as the decision says; nothing stays
    prepared; recovering again changes nothing."""
    dbs = databases(**topology.fixtures)
    note = f"{point.label}-{attempt}"

    gtrid = run_worker(dict(dbs), note, point)
    if dbs.maria is not None:
        (maria_url,) = [url for url in dbs.values() if url.startswith("mysql")]
        wait_disconnected(dbs.maria, database_of(maria_url))

    assert_all_or_nothing(dbs, note, gtrid, point.expected)


@pytest.mark.parametrize(
    "point", [pytest.param(p, id=p.label) for p in CHANGED_NOTHING_POINTS]
)
def test_a_mariadb_branch_that_changed_nothing_is_recovered(
    point, databases, assert_all_or_nothing
):
    """An UPDATE matching no row makes MariaDB an engine that wrote, so its
    branch is prepared though it changed nothing.  MariaDB lists such a
    branch in XA RECOVER once its client died, but answers XA COMMIT or XA
    ROLLBACK from another connection with XA_RBROLLBACK (1402), and drops
    it: for recovery that is a finished branch, not a failure."""
    dbs = databases(**PG_MARIA.fixtures)

    gtrid = run_worker(
        dict(dbs), point.label, point, write=["default"], touch=["maria"]
    )
    wait_disconnected(dbs.maria, database_of(dbs["maria"]))
    assert f"{PREFIX}:{gtrid}:maria".encode() in {
        gtrid for _, gtrid, _ in dbs.maria.xa_recover()
    }

    assert_all_or_nothing(dbs, point.label, gtrid, point.expected, rows_in=["default"])
