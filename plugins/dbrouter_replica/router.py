"""``ReplicaRouter``: reads to a healthy replica, unless they must not.

A read goes to the primary (the engine its model's writes go to) when:

* it is inside ``use_primary()``;
* it locks rows (``SELECT ... FOR UPDATE``);
* the transaction wrote to that primary, or has changes the read's autoflush
  is about to write: a replica would not see them;
* the request's client wrote less than ``pin_seconds`` ago (pin cookie).

Otherwise it goes to a replica in service, chosen once per session (every
read of a request sees one replica, never an older one after a newer one)
and tried before it is used: a replica that refuses the connection is taken
out for the cool-down, and the next replica, then the primary, serves the
read.  Writes are left to the rest of the chain: they go to the primary.

A read's primary is what the other routers' ``db_for_write`` answer for its
model, else ``default``: with several primaries, send each model's writes to
its primary with a router, and its reads follow to that primary's replicas.
"""

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError

from pyramid_dbrouter import bind_of
from pyramid_dbrouter.settings import DEFAULT
from pyramid_dbrouter.writes import connections, has_changes, wrote, wrote_to

from .health import first_line
from .pinning import pinned, primary_forced

#: ``session.info`` key: the replica each primary's reads use in this session
CHOSEN = "dbrouter_replica.chosen"


class ReplicaRouter:
    """Routes reads over the groups of a :class:`Replicas`."""

    def __init__(self, replicas):
        self.replicas = replicas
        # the write methods of the other routers of the chain, found once per
        # chain (one chain per application): (chain, [method, ...])
        self._writers = (None, ())

    def db_for_read(self, model, **hints):
        session = hints.get("session")
        primary = self._primary(model, session, hints)
        group = self.replicas.groups.get(primary)
        if group is None:
            return None
        if self._primary_only(primary, session, hints):
            return primary
        return self._replica(primary, session)

    def allow_migrate(self, db, model, **hints):
        # a replica gets its tables from its primary (and refuses DDL)
        return False if db in self.replicas.primary_of else None

    def allow_relation(self, obj1, obj2, **hints):
        # a replica's objects are its primary's (the core's replica_of); this
        # answers for objects still named by a replica (new, pinned to it)
        primary_of = self.replicas.primary_of
        one, two = bind_of(obj1), bind_of(obj2)
        if one is None or two is None:
            return None
        if primary_of.get(one, one) == primary_of.get(two, two):
            return True
        return None

    # -- which primary ---------------------------------------------------------

    def _primary(self, model, session, hints):
        if session is None:
            return DEFAULT
        chain, writers = self._writers
        if chain is not session.routers:
            writers = [
                r.db_for_write
                for r in session.routers.routers
                if r is not self and hasattr(r, "db_for_write")
            ]
            self._writers = (session.routers, writers)
        for method in writers:
            answer = method(model, **hints)
            if answer is not None:
                return answer
        return DEFAULT

    # -- must it be the primary? -------------------------------------------------

    def _primary_only(self, primary, session, hints):
        if primary_forced():
            return True
        clause = hints.get("clause")
        if clause is not None and getattr(clause, "_for_update_arg", None) is not None:
            return True
        if session is not None and self.session_writes(session, primary):
            return True
        request = hints.get("request")
        return request is not None and self.replicas.pin is not None and pinned(request)

    def session_writes(self, session, primary=None):
        """Whether *session*'s transaction wrote to *primary* (any primary
        when None), or holds changes its next flush will write."""
        if has_changes(session):
            return True
        if primary is not None:
            return wrote_to(session, primary)
        groups = self.replicas.groups
        for name, conn in connections(session):
            if (name == primary or (primary is None and name in groups)) and wrote(
                conn
            ):
                return True
        return False

    # -- which replica -------------------------------------------------------------

    def _replica(self, primary, session):
        chosen = session.info.get(CHOSEN) if session is not None else None
        if chosen is not None and primary in chosen:
            return chosen[primary]
        measure = session is not None  # without one (dbrouter show): no I/O
        for name in self.replicas.health.candidates(primary, measure):
            if session is None:
                return name
            if self._probe(session, name):
                session.info.setdefault(CHOSEN, {})[primary] = name
                return name
        return primary

    def _probe(self, session, name):
        """Open the session's connection to the replica now, so that one that
        refuses it is taken out (and the read goes elsewhere) instead of
        failing the request."""
        try:
            session.connection(bind_arguments={"bind": self.replicas.engine(name)})
        except DBAPIError as exc:
            self.replicas.health.trip(name, f"unreachable ({first_line(exc)})")
            return False
        return True


def ping_on_checkout(engine):
    """SQLAlchemy's pessimistic disconnect handling, on a replica engine: a
    pooled connection that a stopped or restarted replica closed is replaced
    at checkout (or the checkout fails, and the replica is taken out) rather
    than failing the request's first statement.  (``pool_pre_ping`` does the
    same; this spares users from having to set it on every replica.)"""
    dialect = engine.dialect

    def ping(dbapi_connection, connection_record, connection_proxy):
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            raise DisconnectionError("replica connection closed; reconnecting")

    event.listen(engine, "checkout", ping)
