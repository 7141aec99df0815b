"""The commit point comes after every vote of the zope transaction.

A participant of the transaction -- another session, a mail or queue data
manager -- may vote no after the routing session's data manager has voted,
whatever its sort key.  Nothing may then be committed, nor decided COMMIT
(``dbrouter recover`` would commit it, and a retried request would write
twice).  Each scenario ends with every database unchanged, no prepared
branch left, and a recovery run that commits nothing.
"""

import pytest
import transaction
from sqlalchemy import func, select

from pyramid_dbrouter import DBRouterError, get_tm_session
from pyramid_dbrouter.datamanager import RoutingDataManager
from pyramid_dbrouter.decision_point import SORT_KEY
from pyramid_dbrouter.recovery import recover
from twophase_app import Entry, count, create_tables, make_app

pytestmark = pytest.mark.servers


class Vote(Exception):
    """A late participant's no."""


class Voter:
    """A data manager that votes yes or no, with the sort key it is given."""

    def __init__(self, key, says_yes=False):
        self.key = key
        self.says_yes = says_yes
        self.finished = False
        self.transaction_manager = None

    def sortKey(self):
        return self.key() if callable(self.key) else self.key

    def tpc_vote(self, trans):
        if not self.says_yes:
            raise Vote(f"no, from a participant sorting at {self.sortKey()!r}")

    def tpc_finish(self, trans):
        self.finished = True

    def abort(self, trans):
        pass

    tpc_begin = commit = tpc_abort = abort


def _data_manager_key(manager):
    """The sort key of the routing session's data manager, found when asked."""

    def key():
        found = [
            r for r in manager.get()._resources if isinstance(r, RoutingDataManager)
        ]
        return found[0].sortKey()

    return key


#: where the no-voter sorts, against the session's data manager ("~sqlalchemy:")
POSITIONS = {
    "before": lambda manager: "!first",
    "after the data manager": lambda manager: "~~~dummy.last",
    "equal to the data manager": _data_manager_key,
    "equal to the commit point": lambda manager: SORT_KEY,
    "after the commit point": lambda manager: SORT_KEY + "~",
}


@pytest.fixture
def topologies(pg_db, pg_db2, maria_db, sqlite_url):
    """name -> {engine name: URL}; the engines a transaction writes to."""
    return {
        "postgresql pair": {"default": pg_db, "other": pg_db2},
        "postgresql and mariadb": {"default": pg_db, "other": maria_db},
        "postgresql and a last resource": {"default": pg_db, "other": sqlite_url},
    }


def _app(engines):
    create_tables(engines.values())
    return make_app(engines)


def _write(manager, app, note, writers):
    session = get_tm_session(app.registry["dbsession_factory"], manager)
    for name in writers:
        session.using_bind(name).add(Entry(note=note))
    session.flush()
    return session


def _left_prepared(pg_primary, pg_second, mariadb):
    branches = [
        *pg_primary.prepared_transactions(),
        *pg_second.prepared_transactions(),
        *(gtrid.decode() for _f, gtrid, _b in mariadb.xa_recover()),
    ]
    return [b for b in branches if b.startswith("dbr:")]


def _assert_nothing_committed(apps, note, servers):
    for app in apps:
        for url in _urls(app):
            assert count(url, note) == 0, f"{note!r} committed in {url}"
    assert _left_prepared(*servers) == []
    for app in apps:
        report = recover(app.registry)
        assert report.committed == [] and report.remaining == []
        for url in _urls(app):
            assert count(url, note) == 0


def _urls(app):
    return [str(e.url) for _n, e in sorted(_engines(app).items())]


def _engines(app):
    from pyramid_dbrouter import get_engines

    return get_engines(app.registry)


@pytest.fixture
def servers(pg_primary, pg_second, mariadb):
    return pg_primary, pg_second, mariadb


@pytest.mark.parametrize("writers", [["default"], ["default", "other"]])
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize(
    "topology",
    ["postgresql pair", "postgresql and mariadb", "postgresql and a last resource"],
)
def test_a_no_vote_anywhere_commits_nothing(
    topologies, servers, topology, position, writers
):
    app = _app(topologies[topology])
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    _write(manager, app, "late-no", writers)
    manager.get().join(Voter(POSITIONS[position](manager)))
    with pytest.raises((Vote, DBRouterError)):
        manager.commit()
    _assert_nothing_committed([app], "late-no", servers)


@pytest.mark.parametrize("position", ["before", "after the data manager"])
def test_a_yes_vote_commits_every_engine(topologies, servers, position):
    app = _app(topologies["postgresql and mariadb"])
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    _write(manager, app, "late-yes", ["default", "other"])
    voter = Voter(POSITIONS[position](manager), says_yes=True)
    manager.get().join(voter)
    manager.commit()
    assert [count(url, "late-yes") for url in _urls(app)] == [1, 1]
    assert voter.finished
    assert _left_prepared(*servers) == []


@pytest.mark.parametrize("second_writers", [["default"], ["default", "other"]])
@pytest.mark.parametrize(
    "topology", ["postgresql pair", "postgresql and a last resource"]
)
def test_two_sessions_of_two_factories_and_a_late_no(
    topologies, servers, pg_db, maria_db, topology, second_writers
):
    first = _app(topologies[topology])
    second = _app({"default": maria_db, "other": pg_db})
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    # notes differ: a unique note twice in one database would wait on itself
    _write(manager, first, "first-session", ["default", "other"])
    _write(manager, second, "second-session", second_writers)
    manager.get().join(Voter("~~~dummy.last"))
    with pytest.raises(Vote):
        manager.commit()
    _assert_nothing_committed([first, second], "first-session", servers)
    _assert_nothing_committed([first, second], "second-session", servers)


def test_two_sessions_commit_together_when_everyone_says_yes(
    topologies, servers, maria_db, pg_db
):
    first = _app(topologies["postgresql pair"])
    second = _app({"default": maria_db, "other": pg_db})
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    _write(manager, first, "first-session", ["default", "other"])
    _write(manager, second, "second-session", ["default", "other"])
    manager.commit()
    assert [count(url, "first-session") for url in _urls(first)] == [1, 1]
    assert count(maria_db, "second-session") == count(pg_db, "second-session") == 1
    assert _left_prepared(*servers) == []


def test_readers_are_not_prepared_when_two_engines_write(
    pg_db, pg_db2, pg_primary, pg_second
):
    """Of three engines, the two that wrote are prepared; the one that only
    read is rolled back."""
    reader = pg_second.create_database()
    try:
        engines = {"default": pg_db, "pg2": pg_db2, "reader": pg_second.url(reader)}
        app = _app(engines)
        marks = pg_primary.log_size(), pg_second.log_size()
        manager = transaction.TransactionManager(explicit=True)
        manager.begin()
        session = _write(manager, app, "read-too", ["default", "pg2"])
        assert session.using_bind("reader").scalar(select(func.count(Entry.id))) == 0
        manager.commit()
        logs = pg_primary.log_text(marks[0]) + pg_second.log_text(marks[1])
        assert "PREPARE TRANSACTION 'dbr:" in logs
        assert ":default'" in logs and ":pg2'" in logs
        assert ":reader'" not in logs
        assert count(pg_db, "read-too") == count(pg_db2, "read-too") == 1
    finally:
        app.registry["dbrouter"].engines.dispose()
        pg_second.drop_database(reader)


def test_a_one_phase_commit_waits_for_every_vote(pg_db, servers):
    """One engine wrote: its ordinary commit, too, comes after every vote --
    stock zope.sqlalchemy commits in its own vote, and sorts late for that."""
    app = _app({"default": pg_db})
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    _write(manager, app, "one-phase", ["default"])
    manager.get().join(Voter("~~~dummy.last"))
    with pytest.raises(Vote):
        manager.commit()
    assert count(pg_db, "one-phase") == 0
