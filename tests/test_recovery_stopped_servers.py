"""A database server stopped or killed in the middle of a two-phase commit,
then ``dbrouter recover``.

The request runs in this process (WebTest); the spare cluster, which serves
one of its two engines, goes down at a chosen point of the commit.  Once the
decision is COMMIT the request still succeeds (the branch it could not
commit is logged CRITICAL and left to recovery); before, the request fails.
After the server is back and ``dbrouter recover`` ran: all or none
(recovery_scenarios.SERVER_STOPS lists the cases).
"""

import pytest

from recovery_scenarios import SERVER_STOPS, as_param
from twophase_fixtures import PREFIX, inject_fault, post_through_the_fault

pytestmark = pytest.mark.servers


@pytest.mark.parametrize("stop", [as_param(case) for case in SERVER_STOPS])
def test_a_server_stopped_mid_commit_is_recovered_all_or_nothing(
    stop,
    spare_cluster,
    databases,
    client,
    caplog,
    monkeypatch,
    assert_all_or_nothing,
):
    """A database server goes down during the commit: the request succeeds
    after the decision and fails before it; recovery finishes the job."""
    dbs = databases(**stop.topology.fixtures)
    app = client(dbs, prefix=PREFIX)

    def bring_down():
        if stop.how == "kill":
            spare_cluster.kill()
        else:
            spare_cluster.stop(stop.how)

    fault = inject_fault(monkeypatch.setattr, stop.at, bring_down)
    post_through_the_fault(app, dbs, stop, fault, caplog)

    spare_cluster.start()
    assert_all_or_nothing(dbs, stop.label, fault.gtrid, stop.expected)
