"""The fault-injection scenarios of the recovery suites, in one place.

A request writes one row to each of two databases and is stopped at a chosen
point of its commit; each scenario says where, how, and what ``dbrouter
recover`` must make of it: ALL (the row in every database) or NONE.  Which
one is decided by the commit point, the decision row: before it is
committed, NONE; after, ALL.

* ``KILL_RUNS`` - the process killed with SIGKILL (test_recovery_kills.py);
* ``CHANGED_NOTHING_POINTS`` - the same, with a MariaDB branch that changed
  nothing (test_recovery_kills.py);
* ``SERVER_STOPS`` - a database server stopped or killed
  (test_recovery_stopped_servers.py);
* ``TERMINATIONS`` - a backend connection terminated
  (test_recovery_terminated_backends.py).

The points are ``(Checkpoint, engine)``: a named checkpoint of the commit
(``pyramid_dbrouter.checkpoints``) and the engine it concerns (None for the
points without one); branches are prepared and committed in the order of
engine names.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import pytest

from pyramid_dbrouter.checkpoints import Checkpoint
from twophase_fixtures import ALL, NONE


def as_param(case):
    """A case as a test parameter, named after it."""
    return pytest.param(case, id=case.label)


@dataclass(frozen=True)
class Topology:
    """Two engines and the database fixtures giving their URLs: the first,
    ``default``, keeps the decisions, unless an engine without two-phase
    support does (it is then the last resource)."""

    name: str
    fixtures: dict


PG_PG = Topology("postgresql+postgresql", {"default": "pg_db", "pg2": "pg_db2"})
PG_MARIA = Topology("postgresql+mariadb", {"default": "pg_db", "maria": "maria_db"})
MARIA_PG = Topology(
    "mariadb-coordinator+postgresql", {"default": "maria_db", "pg": "pg_db"}
)
PG_SQLITE = Topology(
    "postgresql+sqlite-last-resource", {"default": "pg_db", "lite": "sqlite_url"}
)
#: the spare cluster (which tests stop and kill) as the coordinator, or second
SPARE_PG = Topology(
    "spare-coordinator+postgresql", {"default": "spare_db", "pg": "pg_db"}
)
PG_SPARE = Topology("postgresql+spare", {"default": "pg_db", "spare": "spare_db"})


# -- a process killed with SIGKILL ---------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Where the process dies: at the first time the commit reaches ``at``
    (a Checkpoint, and its engine or None); and what recovery must make of it."""

    label: str
    at: tuple
    expected: str


def two_phase_points(first, second):
    """Kill points of a commit where both engines prepare, *first* first."""
    return [
        KillPoint("after-first-branch-prepared", (Checkpoint.PREPARED, first), NONE),
        KillPoint("after-all-prepared", (Checkpoint.PREPARED, second), NONE),
        # on PostgreSQL the decision is about to be sent, elsewhere it is
        # inserted but not committed: no decision, presumed abort
        KillPoint(
            "before-the-decision-commits",
            (Checkpoint.BEFORE_DECISION_COMMITS, None),
            NONE,
        ),
        KillPoint("after-the-decision-committed", (Checkpoint.DECIDED, None), ALL),
        KillPoint("between-the-two-commits", (Checkpoint.COMMITTED, first), ALL),
        KillPoint("after-both-committed", (Checkpoint.COMMITTED, second), ALL),
    ]


LAST_RESOURCE_POINTS = [
    KillPoint("after-the-branch-prepared", (Checkpoint.PREPARED, "default"), NONE),
    KillPoint(
        "before-the-last-resource-commits",
        (Checkpoint.BEFORE_LAST_RESOURCE, "lite"),
        NONE,
    ),
    # the decision row commits with the last resource's own row
    KillPoint(
        "after-the-last-resource-committed",
        (Checkpoint.LAST_RESOURCE_COMMITTED, "lite"),
        ALL,
    ),
    KillPoint("after-the-decision", (Checkpoint.DECIDED, None), ALL),
    KillPoint("after-the-branch-committed", (Checkpoint.COMMITTED, "default"), ALL),
]

KILL_SCENARIOS = [
    *[(PG_PG, point) for point in two_phase_points("default", "pg2")],
    *[(PG_MARIA, point) for point in two_phase_points("default", "maria")],
    *[(MARIA_PG, point) for point in two_phase_points("default", "pg")],
    *[(PG_SQLITE, point) for point in LAST_RESOURCE_POINTS],
]

#: each scenario runs this many times: a crash must be recovered every time
ATTEMPTS = (1, 2)

KILL_RUNS = [
    pytest.param(
        topology, point, attempt, id=f"{topology.name}-{point.label}-{attempt}"
    )
    for topology, point in KILL_SCENARIOS
    for attempt in ATTEMPTS
]

#: PG_MARIA, where the MariaDB branch only ran an UPDATE matching no row
CHANGED_NOTHING_POINTS = [
    KillPoint("after-all-prepared", (Checkpoint.PREPARED, "maria"), NONE),
    KillPoint("after-the-decision-committed", (Checkpoint.DECIDED, None), ALL),
]


# -- faults inside the process: the request goes on ----------------------------


@dataclass(frozen=True)
class InProcessFault:
    """A fault at checkpoint ``at`` of a request over ``topology``.  Once the
    decision is COMMIT the request still succeeds (what it could not commit
    is left to recovery); before, it fails.  ``critical``: a text the
    CRITICAL log of the request must hold (None: no CRITICAL at all)."""

    label: str
    topology: Topology
    at: tuple
    request_succeeds: bool
    expected: str
    _: KW_ONLY
    critical: str | None = None


@dataclass(frozen=True)
class ServerStop(InProcessFault):
    """The spare cluster goes down: stopped in a pg_ctl mode, or
    ``how="kill"``ed."""

    how: str


SERVER_STOPS = [
    # the decision was COMMIT: the request succeeds, the branch waits for recover
    ServerStop(
        "second-server-stopped-before-its-commit-prepared",
        PG_SPARE,
        at=(Checkpoint.BEFORE_COMMIT_PREPARED, "spare"),
        how="immediate",
        request_succeeds=True,
        expected=ALL,
        critical="could not be committed yet",
    ),
    ServerStop(
        "second-server-killed-before-its-commit-prepared",
        PG_SPARE,
        at=(Checkpoint.BEFORE_COMMIT_PREPARED, "spare"),
        how="kill",
        request_succeeds=True,
        expected=ALL,
        critical="could not be committed yet",
    ),
    ServerStop(
        "coordinator-server-stopped-after-the-decision",
        SPARE_PG,
        at=(Checkpoint.DECIDED, None),
        how="immediate",
        request_succeeds=True,
        expected=ALL,
        critical="could not be committed yet",
    ),
    # before the decision: the request fails and nothing is committed
    ServerStop(
        "second-server-stopped-before-its-prepare",
        PG_SPARE,
        at=(Checkpoint.BEFORE_PREPARE, "spare"),
        how="immediate",
        request_succeeds=False,
        expected=NONE,
    ),
    ServerStop(
        "coordinator-server-killed-before-the-decision-commits",
        SPARE_PG,
        at=(Checkpoint.BEFORE_DECISION_COMMITS, None),
        how="kill",
        request_succeeds=False,
        expected=NONE,
        critical="unknown outcome",
    ),
]


@dataclass(frozen=True)
class Termination(InProcessFault):
    """The server ends the request's connection to engine ``victim``.  On
    PostgreSQL the connection is found by its last statement (``like``,
    ``not_like``); on MariaDB it is the one holding the XA branch."""

    victim: str
    like: str = "%"
    not_like: str = ""


TERMINATIONS = [
    # before the decision: the request fails, nothing is committed
    Termination(
        "second-branch-terminated-before-its-prepare",
        PG_PG,
        at=(Checkpoint.PREPARED, "default"),
        victim="pg2",
        like="INSERT INTO entries%",
        request_succeeds=False,
        expected=NONE,
    ),
    Termination(
        "decision-connection-terminated-before-the-decision-commits",
        PG_PG,
        at=(Checkpoint.BEFORE_DECISION_COMMITS, None),
        victim="default",
        not_like="PREPARE TRANSACTION%",  # not the branch: the other one
        request_succeeds=False,
        expected=NONE,
        critical="unknown outcome",
    ),
    Termination(
        "mariadb-branch-killed-before-its-prepare",
        PG_MARIA,
        at=(Checkpoint.PREPARED, "default"),
        victim="maria",
        request_succeeds=False,
        expected=NONE,
    ),
    # after the decision: COMMIT is tried again from a new connection
    Termination(
        "second-branch-terminated-after-the-decision",
        PG_PG,
        at=(Checkpoint.DECIDED, None),
        victim="pg2",
        like="PREPARE TRANSACTION%",
        request_succeeds=True,
        expected=ALL,
    ),
    Termination(
        "first-branch-terminated-after-the-decision",
        PG_PG,
        at=(Checkpoint.DECIDED, None),
        victim="default",
        like="PREPARE TRANSACTION%",
        request_succeeds=True,
        expected=ALL,
    ),
    Termination(
        "mariadb-branch-killed-after-the-decision",
        PG_MARIA,
        at=(Checkpoint.DECIDED, None),
        victim="maria",
        request_succeeds=True,
        expected=ALL,
    ),
]
