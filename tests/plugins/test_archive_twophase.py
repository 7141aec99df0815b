"""The atomic move: PostgreSQL pair and MariaDB pair.  The copy and the
delete commit together through the core's two-phase commit; the job is
killed (SIGKILL) at each point of that commit, then ``dbrouter recover``
runs: every row is in exactly one database, and the job finishes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from archive_app import write_ini
from archive_data import OLD, ids_in, seed
from test_archive_move import every_row_once

from pyramid_dbrouter import cli

pytest_plugins = ("archive_support",)

HERE = Path(__file__).parent
PREFIX = f"arch{os.getpid()}"
ORDERS = range(1, 7)

#: the commit's points, in order, for the engines archive and default
#: (prepared in the order of their names; default is the coordinator)
POINTS = [
    ("before-prepare", "archive"),
    ("prepared", "archive"),
    ("before-prepare", "default"),
    ("prepared", "default"),
    ("before-decision-commits", None),  # the decision's row, not yet committed
    ("decided", None),  # the commit point: the decision committed
    ("before-commit-prepared", "archive"),
    ("committed", "archive"),
    ("before-commit-prepared", "default"),
    ("committed", "default"),
]
IDS = [f"{p}-{e}" if e else p for p, e in POINTS]


@pytest.fixture
def pg_pair(pg_db, pg_db2):
    return {"default": pg_db, "archive": pg_db2}


@pytest.fixture
def maria_pair(maria_db, mariadb):
    name = mariadb.create_database()
    yield {"default": maria_db, "archive": mariadb.url(name)}
    mariadb.kill_connections(name)
    mariadb.drop_database(name)


def kill_job_at(ini, point, engine):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), str(HERE.parent / "apps")]
    )
    argv = ["archive", ini, "--model", "archive_app:Order", "--older-than", "90d"]
    job = {"argv": argv, "kill_at": point, "engine": engine}
    done = subprocess.run(
        [sys.executable, str(HERE / "archive_worker.py"), json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == -9, done
    assert json.loads(done.stdout.splitlines()[-1])["killed_at"] == point
    return argv


def recover(ini):
    """``dbrouter recover``, again while a dead client's branch is still
    attached to its connection (MariaDB notices the death a moment later)."""
    deadline = time.monotonic() + 20
    while True:
        code = cli.main(["recover", ini])
        if code == 0 or time.monotonic() > deadline:
            return code
        time.sleep(0.2)


def killed_then_recovered(archive_app, pair, tmp_path, point, engine):
    archive_app(pair, **{"dbrouter.xid_prefix": PREFIX})
    seed(pair["default"], ORDERS, OLD)
    ini = write_ini(tmp_path / "shop.ini", pair, **{"dbrouter.xid_prefix": PREFIX})
    argv = kill_job_at(ini, point, engine)
    assert recover(ini) == 0
    hot, cold = every_row_once(pair, ORDERS)
    # before the decision: nothing moved; after it: all moved
    decided = POINTS.index((point, engine)) >= POINTS.index(("decided", None))
    assert cold == (list(ORDERS) if decided else []), (point, engine)
    # the job, run again, finishes
    assert cli.main(argv) == 0
    assert every_row_once(pair, ORDERS) == ([], list(ORDERS))


@pytest.mark.parametrize(("point", "engine"), POINTS, ids=IDS)
def test_postgresql_pair_killed_at_each_point(
    archive_app, pg_pair, tmp_path, point, engine
):
    killed_then_recovered(archive_app, pg_pair, tmp_path, point, engine)


@pytest.mark.parametrize(("point", "engine"), POINTS, ids=IDS)
def test_mariadb_pair_killed_at_each_point(
    archive_app, maria_pair, tmp_path, point, engine
):
    killed_then_recovered(archive_app, maria_pair, tmp_path, point, engine)


def test_postgresql_pair_moves_atomically(archive_app, pg_pair, capsys):
    from archive_app import Order
    from sqlalchemy import select

    from dbrouter_archive import archive_rows
    from pyramid_dbrouter import session_scope

    app = archive_app(pg_pair)
    seed(pg_pair["default"], ORDERS, OLD)
    with session_scope(app.registry) as session:
        moved = archive_rows(session, select(Order).where(Order.id <= 3))
    assert (moved.rows, moved.children) == (3, 6)
    assert every_row_once(pg_pair, ORDERS) == ([4, 5, 6], [1, 2, 3])
    assert ids_in(pg_pair["archive"], "order_lines") == [10, 11, 20, 21, 30, 31]
