"""Moving rows and their children from hot to archive on two SQLite files:
two committed steps, copy (an upsert) then delete, safe to run again after a
crash between them; the batch job ``dbrouter archive``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from archive_app import Order, OrderLine, write_ini
from archive_data import NEW, OLD, customers, ids_in, seed
from sqlalchemy import select, update
from webtest import TestApp

import dbrouter_archive.move as move
from dbrouter_archive import archive_rows
from pyramid_dbrouter import cli, session_scope

pytest_plugins = ("archive_support",)

HERE = Path(__file__).parent


class Crash(Exception):
    pass


def every_row_once(pair, orders, lines_per_order=2):
    """Each order and line is in exactly one of the two databases, and the
    application reads each once."""
    hot, cold = ids_in(pair["default"]), ids_in(pair["archive"])
    assert not set(hot) & set(cold)
    assert sorted(hot + cold) == sorted(orders)
    hot_lines = ids_in(pair["default"], "order_lines")
    cold_lines = ids_in(pair["archive"], "order_lines")
    assert not set(hot_lines) & set(cold_lines)
    expected = sorted(i * 10 + n for i in orders for n in range(lines_per_order))
    assert sorted(hot_lines + cold_lines) == expected
    return hot, cold


@pytest.fixture
def shop(archive_app, sqlite_pair):
    """Orders 1-6 old, 7-10 new, all in hot, two lines each."""
    app = archive_app(sqlite_pair)
    seed(sqlite_pair["default"], range(1, 7), OLD)
    seed(sqlite_pair["default"], range(7, 11), NEW)
    return app


def test_archive_rows_of_a_select_moves_them_and_their_children(shop, sqlite_pair):
    with session_scope(shop.registry) as session:
        moved = archive_rows(session, select(Order).where(Order.created_at < NEW))
    assert (moved.rows, moved.children, moved.kept) == (6, 12, 0)
    hot, cold = every_row_once(sqlite_pair, range(1, 11))
    assert cold == [1, 2, 3, 4, 5, 6]
    assert TestApp(shop).get("/orders").json == list(range(1, 11))
    assert TestApp(shop).get("/orders/2").json["lines"] == 2


def test_archive_rows_of_objects_expunges_them(shop, sqlite_pair):
    with session_scope(shop.registry) as session:
        orders = session.scalars(select(Order).where(Order.id.in_([1, 2]))).all()
        moved = archive_rows(session, orders)
        assert all(o not in session for o in orders)
    assert moved.rows == 2
    assert ids_in(sqlite_pair["archive"]) == [1, 2]
    every_row_once(sqlite_pair, range(1, 11))


def test_a_crash_between_copy_and_delete_then_a_rerun(shop, sqlite_pair, monkeypatch):
    def crash(name):
        if name == "copied":
            raise Crash(name)

    monkeypatch.setattr(move, "checkpoint", crash)
    with pytest.raises(Crash):
        with session_scope(shop.registry) as session:
            archive_rows(session, select(Order).where(Order.created_at < NEW))
    # the copy was committed, the delete was not: rows in both databases
    assert ids_in(sqlite_pair["archive"]) == [1, 2, 3, 4, 5, 6]
    assert ids_in(sqlite_pair["default"]) == list(range(1, 11))
    # ...read once each, hot's copy
    assert TestApp(shop).get("/orders").json == list(range(1, 11))
    monkeypatch.setattr(move, "checkpoint", lambda name: None)
    with session_scope(shop.registry) as session:
        moved = archive_rows(session, select(Order).where(Order.created_at < NEW))
    assert moved.rows == 6
    hot, cold = every_row_once(sqlite_pair, range(1, 11))
    assert cold == [1, 2, 3, 4, 5, 6]


def test_a_crash_after_the_delete_before_the_commit(shop, sqlite_pair, monkeypatch):
    def crash(name):
        if name == "deleted":
            raise Crash(name)

    monkeypatch.setattr(move, "checkpoint", crash)
    with pytest.raises(Crash):
        with session_scope(shop.registry) as session:
            archive_rows(session, select(Order).where(Order.id <= 3))
    assert ids_in(sqlite_pair["default"]) == list(range(1, 11))
    monkeypatch.setattr(move, "checkpoint", lambda name: None)
    with session_scope(shop.registry) as session:
        archive_rows(session, select(Order).where(Order.id <= 3))
    every_row_once(sqlite_pair, range(1, 11))


def test_the_delete_rechecks_the_condition(shop, sqlite_pair, monkeypatch):
    """A row changed after it was copied no longer meets the condition: it
    stays in hot with its lines, and its copy leaves the archive."""
    still_old = Order.created_at < NEW

    with session_scope(shop.registry) as session:

        def touch(name):
            if name == "copied":
                session.using_bind("default").execute(
                    update(Order).where(Order.id == 2).values(created_at=NEW)
                )

        monkeypatch.setattr(move, "checkpoint", touch)
        moved = archive_rows(session, select(Order).where(still_old), only_if=still_old)
    assert (moved.rows, moved.children, moved.kept) == (5, 10, 1)
    hot, cold = every_row_once(sqlite_pair, range(1, 11))
    assert cold == [1, 3, 4, 5, 6]
    assert {20, 21} <= set(ids_in(sqlite_pair["default"], "order_lines"))


# -- dbrouter archive -----------------------------------------------------------


@pytest.fixture
def ini(shop, sqlite_pair, tmp_path):
    return write_ini(tmp_path / "shop.ini", sqlite_pair)


def run(capsys, *argv):
    capsys.readouterr()
    code = cli.main(["archive", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_job_moves_in_batches_with_progress(ini, sqlite_pair, capsys):
    code, out, err = run(
        capsys,
        ini,
        "--model",
        "archive_app:Order",
        "--older-than",
        "90d",
        "--batch",
        "4",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("moving Order (created_at < ")
    assert lines[1].startswith("batch 1: 4 rows moved (+8 children); 4 rows in ")
    assert lines[2].startswith("batch 2: 2 rows moved (+4 children); 6 rows in ")
    assert "rows/s" in lines[2]
    assert lines[3].startswith(
        "done: 6 rows of Order and 12 children moved in 2 batches"
    )
    hot, cold = every_row_once(sqlite_pair, range(1, 11))
    assert cold == [1, 2, 3, 4, 5, 6]
    # run again: nothing left to move
    code, out, err = run(
        capsys, ini, "--model", "archive_app:Order", "--older-than", "90d"
    )
    assert code == 0 and "done: 0 rows" in out


def test_dry_run_counts_and_moves_nothing(ini, sqlite_pair, capsys):
    code, out, _ = run(
        capsys, ini, "--model", "archive_app:Order", "--where", "id > 8", "--dry-run"
    )
    assert code == 0
    assert out.startswith("dry run: 2 rows of Order (WHERE id > 8) would move from ")
    assert ids_in(sqlite_pair["archive"]) == []


def test_the_job_where(ini, sqlite_pair, capsys):
    code, out, err = run(
        capsys, ini, "--model", "archive_app:Order", "--where", "id > 8"
    )
    assert code == 0, err
    assert ids_in(sqlite_pair["archive"]) == [9, 10]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "archive_app:Nope", "--where", "1=1"], "cannot import"),
        (["--model", "archive_app:Note", "--where", "1=1"], "not an archived model"),
        (
            ["--model", "archive_app:Order", "--older-than", "soon"],
            "a number and a unit",
        ),
        (
            ["--model", "archive_app:Order", "--older-than", "9d", "--age-column", "x"],
            "has no such column",
        ),
        (
            ["--model", "archive_app:Order", "--where", "1=1", "--batch", "0"],
            "positive",
        ),
    ],
)
def test_the_job_refuses_bad_arguments(ini, capsys, argv, message):
    code, _out, err = run(capsys, ini, *argv)
    assert code == 2
    assert message in err


def test_a_killed_job_is_finished_by_a_second_run(ini, sqlite_pair):
    """The job killed (SIGKILL) between a batch's copy and its delete: the
    rows are in both databases; the next run leaves each in exactly one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), str(HERE.parent / "apps")]
    )
    job = {
        "argv": [
            "archive",
            ini,
            "--model",
            "archive_app:Order",
            "--older-than",
            "90d",
            "--batch",
            "4",
        ],
        "kill_at": "copied",
        "occurrence": 2,
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "archive_worker.py"), json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == -9, done
    assert json.loads(done.stdout.splitlines()[-1]) == {"killed_at": "copied"}
    # batch 1 done, batch 2 copied but not deleted
    assert ids_in(sqlite_pair["archive"]) == [1, 2, 3, 4, 5, 6]
    assert ids_in(sqlite_pair["default"]) == [5, 6, 7, 8, 9, 10]
    assert customers(sqlite_pair["default"])[5] == "c"
    assert cli.main(job["argv"]) == 0
    hot, cold = every_row_once(sqlite_pair, range(1, 11))
    assert cold == [1, 2, 3, 4, 5, 6]


def test_lines_read_through_the_session_follow_their_order(shop, sqlite_pair):
    with session_scope(shop.registry) as session:
        archive_rows(session, select(Order).where(Order.id == 1))
    with session_scope(shop.registry) as session:
        lines = session.scalars(select(OrderLine).where(OrderLine.order_id == 1))
        assert [line.id for line in lines] == [10, 11]
