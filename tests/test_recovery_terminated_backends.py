"""A connection ended by the server in the middle of a two-phase commit
(``pg_terminate_backend``, MariaDB's ``KILL``), then ``dbrouter recover``.

Before the decision the request fails and nothing is committed; after it,
the branch is committed from a new connection and the request succeeds
(recovery_scenarios.TERMINATIONS lists the cases).
"""

import pytest

from recovery_scenarios import TERMINATIONS, as_param
from twophase_fixtures import (
    PREFIX,
    database_of,
    inject_fault,
    post_through_the_fault,
    wait_gone,
)

pytestmark = pytest.mark.servers


def terminate_backends(cluster, dbname, like="%", not_like=""):
    """``pg_terminate_backend`` the connections to *dbname* whose last
    statement is ``LIKE`` *like* and not ``LIKE`` *not_like*; wait until they
    are gone.  Returns how many there were."""
    pids = cluster.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s "
        "AND pid <> pg_backend_pid() AND query LIKE %s AND query NOT LIKE %s",
        (dbname, like, not_like),
    )
    for (pid,) in pids:
        cluster.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    return len(pids)


def kill_xa_connection(maria, dbname):
    """``KILL`` the MariaDB connection to *dbname* that holds an XA branch,
    and wait until the server has let go of the branch."""
    (thread,) = [
        thread
        for (thread,) in maria.execute(
            "SELECT t.trx_mysql_thread_id FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            "WHERE p.db = %s",
            (dbname,),
        )
    ]
    maria.execute(f"KILL {int(thread)}")
    wait_gone(maria, thread)


@pytest.mark.parametrize("termination", [as_param(case) for case in TERMINATIONS])
def test_a_terminated_connection_mid_commit_is_recovered_all_or_nothing(
    termination, databases, client, caplog, monkeypatch, assert_all_or_nothing
):
    """The server ends one of the request's connections during the commit:
    the request fails before the decision; after it, a retry commits."""
    dbs = databases(**termination.topology.fixtures)
    app = client(dbs, prefix=PREFIX)

    def terminate():
        dbname = database_of(dbs[termination.victim])
        if termination.victim == "maria":
            kill_xa_connection(dbs.maria, dbname)
        else:
            cluster, _ = dbs.places[termination.victim]
            assert terminate_backends(
                cluster, dbname, termination.like, termination.not_like
            )

    fault = inject_fault(monkeypatch.setattr, termination.at, terminate)
    post_through_the_fault(app, dbs, termination, fault, caplog)
    if termination.request_succeeds:  # the first COMMIT failed, a retry did it
        assert any("COMMIT of prepared branch" in m for m in caplog.messages)

    assert_all_or_nothing(dbs, termination.label, fault.gtrid, termination.expected)
