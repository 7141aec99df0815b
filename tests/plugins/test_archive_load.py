"""10,000 orders moved in batches by ``dbrouter archive`` while other
requests read and write: no order lost, none read twice, progress printed."""

import io
import threading

from archive_app import write_ini
from archive_data import NEW, OLD, ids_in, seed
from webtest import TestApp

from pyramid_dbrouter import cli

pytest_plugins = ("archive_support",)

ROWS = 10_000


def test_ten_thousand_rows_move_while_requests_read_and_write(
    archive_app, sqlite_pair, tmp_path
):
    app = archive_app(sqlite_pair)
    seed(sqlite_pair["default"], range(1, ROWS + 1), OLD, lines=1)
    ini = write_ini(tmp_path / "shop.ini", sqlite_pair)
    args = cli.make_parser().parse_args(
        ["archive", ini, "--model", "archive_app:Order", "--older-than", "90d"]
        + ["--batch", "1000"]
    )
    out = io.StringIO()
    done = threading.Event()
    written = set()  # ids of the orders whose POST returned
    problems, reads = [], []

    def job():
        try:
            assert args.run(args, out) == 0
        except BaseException as exc:  # reported by the test thread
            problems.append(f"job: {exc!r}")
        finally:
            done.set()

    def reader():
        client = TestApp(app)
        while not done.is_set():
            before = set(written)
            ids = client.get("/orders", {"limit": 2 * ROWS}).json
            seen = set(ids)
            if len(seen) != len(ids):
                problems.append(f"duplicated: {len(ids) - len(seen)}")
            lost = (set(range(1, ROWS + 1)) | before) - seen
            if lost:
                problems.append(f"lost: {sorted(lost)[:5]}...")
            if ids != sorted(ids):
                problems.append("not in order")
            reads.append(len(ids))

    def writer():
        client = TestApp(app)
        new_id = ROWS + 1
        while not done.is_set():
            client.post("/orders", {"id": new_id, "created_at": NEW.isoformat()})
            written.add(new_id)
            new_id += 1

    threads = [threading.Thread(target=f) for f in (job, reader, reader, writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert problems == []
    assert len(reads) >= 2
    progress = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in progress[1:-1]] == [
        f"batch {n}" for n in range(1, 11)
    ]
    assert progress[-1].startswith(
        f"done: {ROWS} rows of Order and {ROWS} children moved in 10 batches"
    )
    hot, cold = ids_in(sqlite_pair["default"]), ids_in(sqlite_pair["archive"])
    assert cold == list(range(1, ROWS + 1))
    assert hot == sorted(written)
    print("\n".join(progress), f"\nreads during the move: {len(reads)}", sep="")
