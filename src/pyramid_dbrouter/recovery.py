"""Finishing two-phase transactions that a crash left prepared.

:func:`recover` visits every configured engine that can prepare (each
database once, however many engines share it), lists the prepared branches
carrying this application's ``dbrouter.xid_prefix``, and

* commits those whose transaction was decided COMMIT (the decision is read
  from the coordinator, and from the engines without two-phase support,
  where last-resource commits keep theirs);
* rolls back the others -- presumed abort -- after recording an ABORT
  decision, so that a coordinator still running cannot then record COMMIT;
* treats "unknown transaction id" as already resolved.

It is idempotent. ``dbrouter recover`` exits 0 when none of this
application's branches remain.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError

from . import checkpoints
from .branches import autocommit, driver_for, parse_xid
from .checkpoints import Checkpoint
from .config import get_state
from .decisions import ABORT, COMMIT

log = logging.getLogger(__name__)


@dataclass
class Report:
    committed: list = field(default_factory=list)
    rolled_back: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # too young (--older-than)
    failed: list = field(default_factory=list)  # (xid, error)
    remaining: list = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self):
        return not self.remaining and not self.failed

    def lines(self):
        verb = "would " if self.dry_run else ""
        out = [f"{verb}commit {x}" for x in self.committed]
        out += [f"{verb}roll back {x}" for x in self.rolled_back]
        out += [f"left (younger than --older-than) {x}" for x in self.skipped]
        out += [f"FAILED {x}: {e}" for x, e in self.failed]
        if not self.dry_run:
            out += [f"still prepared: {x}" for x in self.remaining]
        return out


def _prepared(engine, prefix):
    """This application's prepared branches on *engine*'s database."""
    with autocommit(engine) as dbapi_connection:
        found = driver_for(engine).recover(dbapi_connection)
    return [(xid, at) for xid, at in found if parse_xid(xid, prefix) is not None]


def _decision_engines(state):
    """The engines that may hold decisions: the coordinator, and those that
    can only be a last resource."""
    names = [state.policy.coordinator]
    for name, engine in state.engines.static_items():
        if name not in names and not driver_for(engine).supports_twophase:
            names.append(name)
    return [state.engines.get(n) for n in names]


def _read_decision(state, gtrid):
    return state.policy.decisions.read(_decision_engines(state), gtrid)


def _presume_abort(state, gtrid):
    """Record ABORT on the coordinator; return the decision that stands."""
    name = state.policy.coordinator
    if state.policy.decisions.record_abort(name, state.engines.get(name), gtrid):
        return ABORT
    # a coordinator decided in the meantime: its decision stands
    return _read_decision(state, gtrid)


def recover(registry, dry_run=False, older_than=0, now=None):
    """Resolve this application's prepared branches; return a :class:`Report`."""
    state = get_state(registry)
    prefix = state.policy.prefix
    report = Report(dry_run=dry_run)
    now = now or datetime.now(UTC)
    resolved_gtrids = set()
    for engine in _databases(state):
        driver = driver_for(engine)
        for xid, prepared_at in _prepared(engine, prefix):
            gtrid, branch = parse_xid(xid, prefix)
            if older_than and prepared_at is not None:
                at = (
                    prepared_at
                    if prepared_at.tzinfo
                    else prepared_at.replace(tzinfo=UTC)
                )
                if (now - at).total_seconds() < older_than:
                    report.skipped.append(xid)
                    continue
            decision = _read_decision(state, gtrid)
            if dry_run:
                (report.committed if decision == COMMIT else report.rolled_back).append(
                    xid
                )
                continue
            if decision is None:
                decision = _presume_abort(state, gtrid)
            checkpoints.reached(Checkpoint.RECOVERY_FINISHES, branch, gtrid)
            try:
                driver.finish_prepared(engine, xid, commit=decision == COMMIT)
            except DBAPIError as exc:
                if not driver.is_unknown_xid(exc):
                    report.failed.append((xid, str(exc.orig).strip()))
                    continue
            (report.committed if decision == COMMIT else report.rolled_back).append(xid)
            resolved_gtrids.add(gtrid)
    if not dry_run:
        report.remaining = _still_prepared(state)
        left = {parse_xid(x, prefix)[0] for x in report.remaining}
        engines = _decision_engines(state)
        finished = {g for g in resolved_gtrids if g not in left}
        state.policy.decisions.forget(engines, finished)
        _forget_stale(state, engines, left, now)
    return report


#: COMMIT decisions older than this, with no branch left, are removed (a
#: process that stopped keeps its last few until then)
STALE_AFTER = 3600


def _forget_stale(state, engines, left, now):
    if any(
        not callable(getattr(factory, "keys", None))
        for factory in state.engines.factories.values()
    ):
        # a branch may sit on an engine that cannot be listed: keep its
        # decision rather than guess
        return
    cutoff = (now - timedelta(seconds=STALE_AFTER)).replace(tzinfo=None)
    state.policy.decisions.forget_older(engines, cutoff, keep=left)


def _dynamic(state):
    """Engines a factory made, or can list (a factory with ``.keys(settings)``)."""
    engines = state.engines
    names = set(engines.open_dynamic_names())
    for prefix, factory in engines.factories.items():
        lister = getattr(factory, "keys", None)
        if callable(lister):
            names.update(f"{prefix}:{key}" for key in lister(engines.settings))
    return [(n, engines.get(n)) for n in sorted(names)]


def _databases(state):
    """One engine per database that can hold prepared branches: engines
    sharing a database (or, for MariaDB, a server) are visited once."""
    seen = set()
    for _name, engine in state.engines.static_items() + _dynamic(state):
        driver = driver_for(engine)
        key = driver.database_key(engine.url)
        if driver.supports_twophase and key not in seen:
            seen.add(key)
            yield engine


def _still_prepared(state):
    prefix = state.policy.prefix
    return [xid for e in _databases(state) for xid, _ in _prepared(e, prefix)]
