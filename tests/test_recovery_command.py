"""``dbrouter recover`` itself: ``--dry-run``, ``--older-than``, presumed
abort, a recovery racing a running commit, unknown transaction ids, and the
branches of other applications.

The prepared branches here are left by hand, as a crashed process would
leave them, with this run's transaction-id prefix (``PREFIX``).
"""

import time

import pytest
from sqlalchemy.exc import IntegrityError

from pyramid_dbrouter.checkpoints import Checkpoint
from recovery_scenarios import PG_MARIA, PG_PG
from twophase_app import count
from twophase_fixtures import (
    NONE,
    PREFIX,
    database_of,
    decisions_on,
    inject_fault,
    our_branches,
    record_decision,
    wait_gone,
    write_ini,
)

pytestmark = pytest.mark.servers


def prepare_on_postgresql(cluster, dbname, xid, note=None):
    """Leave a prepared branch *xid* in *dbname*, as a crashed process would:
    with a row of *note* in ``entries`` when a note is given."""
    with cluster.connect(dbname, autocommit=False) as conn:
        if note is not None:
            conn.execute("INSERT INTO entries (note) VALUES (%s)", (note,))
        conn.execute(f"PREPARE TRANSACTION '{xid}'")


def prepare_on_mariadb(maria, dbname, xid, note=None):
    """The same on MariaDB; returns once the server has let go of the branch
    (until then another connection cannot finish it)."""
    with maria.connect(dbname) as conn, conn.cursor() as cur:
        thread = conn.thread_id()
        cur.execute(f"XA START '{xid}'")
        if note is not None:
            cur.execute("INSERT INTO entries (note) VALUES (%s)", (note,))
        cur.execute(f"XA END '{xid}'")
        cur.execute(f"XA PREPARE '{xid}'")
    wait_gone(maria, thread)


def counts_of(engines, note):
    return {name: count(url, note) for name, url in engines.items()}


def prepared_in(dbs):
    return sorted(our_branches(PREFIX, *dbs.places.values()))


@pytest.fixture
def ini(pg_pg, tmp_path):
    """An ini file naming the engines of ``pg_pg``, with this run's prefix."""
    return write_ini(tmp_path / "app.ini", pg_pg)


def test_dry_run_reports_and_changes_nothing(
    pg_pg, ini, run_recover, assert_nothing_left_to_recover
):
    """``--dry-run`` says what it would do and exits 0; the branches stay
    prepared and no decision is written.  Run for real afterwards, the
    branches decided COMMIT are committed and the others rolled back."""
    record_decision(pg_pg["default"], "c0ffee", "commit")
    for name, (cluster, dbname) in pg_pg.places.items():
        prepare_on_postgresql(cluster, dbname, f"{PREFIX}:c0ffee:{name}", "decided")
    prepare_on_postgresql(*pg_pg.places["pg2"], f"{PREFIX}:abba:pg2", "undecided")
    branches = prepared_in(pg_pg)

    dry = run_recover(ini, "--dry-run")

    assert dry.code == 0, dry
    assert sorted(dry.lines) == [
        f"would commit {PREFIX}:c0ffee:default",
        f"would commit {PREFIX}:c0ffee:pg2",
        f"would roll back {PREFIX}:abba:pg2",
    ]
    assert prepared_in(pg_pg) == branches
    assert decisions_on(pg_pg["default"]) == {f"{PREFIX}:c0ffee": "commit"}
    assert counts_of(pg_pg, "decided") == {"default": 0, "pg2": 0}

    real = run_recover(ini)

    assert real.code == 0, real
    assert sorted(real.lines) == [
        f"commit {PREFIX}:c0ffee:default",
        f"commit {PREFIX}:c0ffee:pg2",
        f"roll back {PREFIX}:abba:pg2",
    ]
    assert counts_of(pg_pg, "decided") == {"default": 1, "pg2": 1}
    assert counts_of(pg_pg, "undecided") == {"default": 0, "pg2": 0}
    assert prepared_in(pg_pg) == []
    # the finished COMMIT is forgotten; the ABORT stays, against a late coordinator
    assert decisions_on(pg_pg["default"]) == {f"{PREFIX}:abba": "abort"}
    assert_nothing_left_to_recover(ini)


def test_older_than_leaves_a_fresh_branch_alone(pg_pg, ini, run_recover):
    """A branch younger than ``--older-than`` may belong to a commit still
    running: it is left alone, and since it remains the exit status is not
    0.  Once it is old enough, it is resolved."""
    prepare_on_postgresql(*pg_pg.places["default"], f"{PREFIX}:f4e54:default", "fresh")

    young = run_recover(ini, "--older-than", "3600")

    assert young.code != 0, young
    assert f"left (younger than --older-than) {PREFIX}:f4e54:default" in young.lines
    assert prepared_in(pg_pg) == [f"{PREFIX}:f4e54:default"]
    assert decisions_on(pg_pg["default"]) == {}

    time.sleep(1.2)
    old = run_recover(ini, "--older-than", "1")

    assert old.code == 0, old
    assert old.lines == [f"roll back {PREFIX}:f4e54:default"]
    assert prepared_in(pg_pg) == []


def test_presumed_abort_records_an_abort_decision_first(
    pg_pg, ini, pg_primary, run_recover
):
    """A branch without a decision is rolled back -- after an ABORT decision
    is committed on the coordinator, so that a coordinator still running
    cannot then decide COMMIT; the ABORT row stays."""
    prepare_on_postgresql(*pg_pg.places["default"], f"{PREFIX}:0bad:default", "orphan")
    mark = pg_primary.log_size()

    recovered = run_recover(ini)

    assert recovered.code == 0, recovered
    assert recovered.lines == [f"roll back {PREFIX}:0bad:default"]
    assert decisions_on(pg_pg["default"]) == {f"{PREFIX}:0bad": "abort"}
    log = pg_primary.log_text(since=mark)
    recorded = log.index("INSERT INTO dbrouter_decisions")
    parameters = log.index("DETAIL", recorded)
    assert f"'{PREFIX}:0bad'" in log[parameters : log.index("\n", parameters)]
    assert recorded < log.index(f"ROLLBACK PREPARED '{PREFIX}:0bad:default'")
    assert counts_of(pg_pg, "orphan") == {"default": 0, "pg2": 0}


def test_a_recover_racing_a_running_commit_wins_with_abort(
    pg_pg,
    ini,
    client,
    run_recover,
    assert_nothing_left_to_recover,
    assert_outcome,
    monkeypatch,
):
    """Recovery runs while a request's branches are all prepared but its
    decision not yet written (what ``--older-than`` is there to avoid).
    Recovery records ABORT and rolls them back; the request then cannot
    record COMMIT: it fails, and nothing is committed anywhere."""
    app = client(pg_pg, prefix=PREFIX)
    during = {}

    def recover_now():
        during["recovery"] = run_recover(ini)

    fault = inject_fault(monkeypatch.setattr, (Checkpoint.PREPARED, "pg2"), recover_now)
    with pytest.raises(IntegrityError):
        app.post("/write", {"note": "raced", "engines": "default,pg2"})

    gtrid = fault.gtrid
    assert during["recovery"].code == 0, during["recovery"]
    assert sorted(during["recovery"].lines) == [
        f"roll back {PREFIX}:{gtrid}:default",
        f"roll back {PREFIX}:{gtrid}:pg2",
    ]
    assert_outcome(counts_of(pg_pg, "raced"), NONE)
    assert decisions_on(pg_pg["default"]) == {f"{PREFIX}:{gtrid}": "abort"}
    assert prepared_in(pg_pg) == []
    assert_nothing_left_to_recover(ini)


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_an_unknown_transaction_id_counts_as_resolved(
    server,
    databases,
    tmp_path,
    run_recover,
    assert_nothing_left_to_recover,
    monkeypatch,
):
    """A branch finished by someone else between recovery's listing and its
    COMMIT ("unknown transaction id") is taken as resolved: exit 0."""
    topology, name = (PG_PG, "pg2") if server == "postgresql" else (PG_MARIA, "maria")
    dbs = databases(**topology.fixtures)
    url = dbs[name]
    ini = write_ini(tmp_path / "app.ini", dbs)
    xid = f"{PREFIX}:5eed:{name}"
    record_decision(dbs["default"], "5eed", "commit")
    if server == "postgresql":
        cluster, dbname = dbs.places[name]
        prepare_on_postgresql(cluster, dbname, xid, "by hand")
    else:
        prepare_on_mariadb(dbs.maria, database_of(url), xid, "by hand")

    def finish_by_hand():
        if server == "postgresql":
            cluster.execute(f"COMMIT PREPARED '{xid}'", dbname=dbname)
        else:
            dbs.maria.execute(f"XA COMMIT '{xid}'")

    fault = inject_fault(
        monkeypatch.setattr, (Checkpoint.RECOVERY_FINISHES, name), finish_by_hand
    )
    recovered = run_recover(ini)

    # finished by hand just before: recovery's own COMMIT met "unknown
    # transaction id", and took it as resolved (else it reports FAILED)
    assert fault.fired, recovered
    assert recovered.code == 0, recovered
    assert recovered.lines == [f"commit {xid}"]
    assert count(url, "by hand") == 1
    monkeypatch.undo()
    assert_nothing_left_to_recover(ini)


def test_a_decision_without_a_branch_is_nothing_to_recover(
    pg_pg, ini, assert_nothing_left_to_recover
):
    """Decisions whose branches are all finished need nothing."""
    record_decision(pg_pg["default"], "d0ne", "commit")
    assert_nothing_left_to_recover(ini)


def test_recover_touches_only_this_applications_branches(
    databases, pg_primary, mariadb, tmp_path, run_recover
):
    """Branches of other prefixes, and branches of this prefix in another
    database of the same PostgreSQL server, are left alone."""
    dbs = databases(**PG_MARIA.fixtures)
    ini = write_ini(tmp_path / "app.ini", dbs)
    _cluster, dbname = dbs.places["default"]
    other_db = pg_primary.create_database()
    maria_xid = f"otherapp:{database_of(dbs['maria'])}:y"
    foreign = [
        (dbname, "otherapp:x:y"),
        (dbname, f"{PREFIX}x:x:default"),  # a prefix that begins with ours
        (other_db, f"{PREFIX}:e15e:default"),
    ]
    try:
        for db, xid in foreign:
            prepare_on_postgresql(pg_primary, db, xid)
        # with a row: MariaDB drops a branch that changed nothing
        prepare_on_mariadb(mariadb, database_of(dbs["maria"]), maria_xid, "other")

        recovered = run_recover(ini)

        assert recovered.code == 0, recovered
        assert recovered.lines == ["no prepared branch of this application"]
        left = set(pg_primary.prepared_transactions())
        assert {xid for _, xid in foreign} <= left
        assert maria_xid.encode() in {gtrid for _, gtrid, _ in mariadb.xa_recover()}
    finally:
        for db, xid in foreign:
            if xid in pg_primary.prepared_transactions(db):
                pg_primary.execute(f"ROLLBACK PREPARED '{xid}'", dbname=db)
        if maria_xid.encode() in {gtrid for _, gtrid, _ in mariadb.xa_recover()}:
            mariadb.execute(f"XA ROLLBACK '{maria_xid}'")
        pg_primary.drop_database(other_db)


def test_each_application_recovers_only_its_own_prefix(
    pg_pg, ini, tmp_path, run_recover
):
    """Two applications on one database, each with its own
    ``dbrouter.xid_prefix`` (one with the default, ``dbr``): each recover
    resolves its own application's branches only."""
    default_ini = write_ini(
        tmp_path / "default.ini", pg_pg, **{"dbrouter.xid_prefix": None}
    )
    cluster, dbname = pg_pg.places["default"]
    prepare_on_postgresql(cluster, dbname, "dbr:5h0p:default", "theirs")
    prepare_on_postgresql(cluster, dbname, f"{PREFIX}:d8r:default", "ours")

    theirs = run_recover(default_ini)

    assert theirs.code == 0, theirs
    assert theirs.lines == ["roll back dbr:5h0p:default"]
    assert cluster.prepared_transactions(dbname) == [f"{PREFIX}:d8r:default"]

    ours = run_recover(ini)

    assert ours.code == 0, ours
    assert ours.lines == [f"roll back {PREFIX}:d8r:default"]
    assert cluster.prepared_transactions(dbname) == []
