"""Which replicas may serve reads now: a circuit breaker per replica.

A replica is *out* for ``cooldown_seconds`` after it refused a connection,
timed out, or was found lagging more than ``max_lag_seconds`` behind its
primary; reads then go to the next replica, then to the primary.  Once the
cool-down is over the replica is tried again (its lag is checked first), so a
replica that came back serves reads again without a restart.

Lag is measured on the replica itself, at most once every ``check_seconds``
per replica and process (never per statement), by the first request that
finds the last measure stale; other requests meanwhile use the last one.
What is measured is kept here as data, one query per dialect:

* PostgreSQL: 0 when everything received is replayed, else (or when it is not
  streaming yet, just restarted) the age of the last replayed transaction
  (``now() - pg_last_xact_replay_timestamp()``).  That is conservative: after
  a long idle period on the primary, a new write makes the replica look as old
  as the last transaction it replayed until it replays it.
* other dialects: not measured (a replica is judged by its connections only).

This state is the one thing shared by the requests of an application (a
breaker that each request learnt anew would make each pay the timeout); it is
held by the application's :class:`Replicas`, never at module level, and a
lock guards it.
"""

import logging
import random
import threading
import time

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

#: seconds a replica is behind its primary, by dialect name
LAG_QUERIES = {
    "postgresql": text(
        "SELECT CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()"
        " THEN 0"
        " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()),"
        " 0) END"
    ),
}


class ReplicaState:
    """The breaker of one replica: when it is out until, and its last lag."""

    __slots__ = ("name", "out_until", "checked_at", "lag", "reason", "checking")

    def __init__(self, name):
        self.name = name
        self.out_until = 0.0
        self.checked_at = None
        self.lag = None
        self.reason = None
        self.checking = threading.Lock()

    def __repr__(self):
        return f"<ReplicaState {self.name} out_until={self.out_until} lag={self.lag}>"


class Health:
    """The breakers of every replica of an application.

    *engine_of* maps a replica name to its Engine (looked up when needed:
    engines exist once the configuration is committed); *clock* is
    ``time.monotonic`` but for tests.
    """

    def __init__(
        self,
        groups,
        *,
        strategy="round_robin",
        max_lag_seconds=3.0,
        cooldown_seconds=10.0,
        check_seconds=1.0,
        clock=time.monotonic,
    ):
        self.groups = groups
        self.strategy = strategy
        self.max_lag_seconds = max_lag_seconds
        self.cooldown_seconds = cooldown_seconds
        self.check_seconds = check_seconds
        self.clock = clock
        self.engine_of = None
        self._states = {r: ReplicaState(r) for rs in groups.values() for r in rs}
        self._lock = threading.Lock()
        self._turn = {primary: 0 for primary in groups}
        self._all_out_warned = {}
        self._random = random.Random()

    def state(self, name):
        return self._states[name]

    # -- choosing --------------------------------------------------------------

    def candidates(self, primary, measure=True):
        """The replicas of *primary* in service, in the order to try them
        (the strategy's), their lag measured if the last measure is stale
        (unless not *measure*: ``dbrouter show`` connects to nothing)."""
        replicas = self.groups[primary]
        if len(replicas) > 1:
            if self.strategy == "random":
                start = self._random.randrange(len(replicas))
            else:
                with self._lock:
                    start = self._turn[primary]
                    self._turn[primary] = (start + 1) % len(replicas)
            replicas = replicas[start:] + replicas[:start]
        now = self.clock()
        found = []
        for name in replicas:
            state = self._states[name]
            if state.out_until > now:
                continue
            if measure and (
                state.checked_at is None or now - state.checked_at >= self.check_seconds
            ):
                self.check(name)
                if state.out_until > self.clock():
                    continue
            found.append(name)
        if not found:
            self._warn_all_out(primary)
        return found

    # -- measuring -------------------------------------------------------------

    def check(self, name):
        """Measure *name*'s lag now (unless another thread is at it): trips
        the breaker if it is unreachable or lags too much."""
        state = self._states[name]
        if not state.checking.acquire(blocking=False):
            return  # another request is measuring it: use the last measure
        try:
            engine = self.engine_of(name)
            query = LAG_QUERIES.get(engine.dialect.name)
            try:
                with engine.connect() as conn:
                    lag = (
                        float(conn.execute(query).scalar() or 0)
                        if query is not None
                        else 0.0
                    )
            except DBAPIError as exc:  # refused, timed out, or the check failed
                self.trip(name, f"unreachable ({first_line(exc)})")
                return
            finally:
                state.checked_at = self.clock()
            state.lag = lag
            if lag > self.max_lag_seconds:
                self.trip(
                    name,
                    f"{lag:.1f} s behind its primary (max_lag_seconds = "
                    f"{self.max_lag_seconds:g})",
                )
        finally:
            state.checking.release()

    def trip(self, name, reason):
        """Take *name* out of service for the cool-down."""
        state = self._states[name]
        now = self.clock()
        was_out = state.out_until > now
        state.out_until = now + self.cooldown_seconds
        state.reason = reason
        if not was_out:
            log.warning(
                "replica %s is out for %g s: %s; its reads go to the next replica "
                "or to the primary",
                name,
                self.cooldown_seconds,
                reason,
            )

    def _warn_all_out(self, primary):
        now = self.clock()
        with self._lock:
            last = self._all_out_warned.get(primary)
            if last is not None and now - last < self.cooldown_seconds:
                return
            self._all_out_warned[primary] = now
        reasons = "; ".join(
            f"{r}: {self._states[r].reason or 'out'}" for r in self.groups[primary]
        )
        log.warning(
            "every replica of %s is out (%s): reads go to %s itself",
            primary,
            reasons,
            primary,
        )


def first_line(exc):
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
