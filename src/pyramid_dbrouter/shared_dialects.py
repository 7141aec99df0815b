"""Engines made on demand share their server's dialect and compiled cache.

SQLAlchemy caches each compiled statement per engine, under a key that
holds the Dialect object.  An engine factory makes a new engine for every
tenant, and evicted engines are made again: with an engine of its own each
time, every tenant miss compiled its statements again (two thirds of a
miss's cost) and ran ``create_engine`` whole.  Engines whose URLs differ
only in the database (the SQLite files of one root, the databases of one
server and user) are the same kind of engine: they share here one
initialized Dialect and one compiled cache, and each gets a pool of its own
for its own URL -- connections are never shared between URLs.

The first engine of a server is ``create_engine``'s, as before; once it has
connected (so that its dialect is initialized: server version, default
schema, isolation level), the next ones are assembled from public parts of
the Dialect interface (``create_connect_args``, ``get_dialect_pool_class``,
``on_connect_url``, ``connect``) as ``create_engine`` assembles them.
"""

import threading

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from .internals import builtin_on_connect, compiled_cache

#: at most this many servers share a dialect; past it engines are made alone
#: (the URLs come from factories, which could name any number of servers)
MAX_SHARED = 64


def share_key(url):
    """What engines sharing a dialect must have in common: everything in the
    URL but the database; None for a URL that loads ``create_engine``
    plugins (``?plugin=``), which may change anything."""
    if "plugin" in url.query:
        return None
    # a query value is a string, or a tuple of them for a repeated key
    query = tuple(sorted(url.query.items()))
    return (url.drivername, url.username, url.password, url.host, url.port, query)


class _Shared:
    """One server's dialect and compiled cache, adopted from the first engine
    made alone for it that connects."""

    def __init__(self):
        self.dialect = self.cache = None
        self.ready = False
        self._lock = threading.Lock()

    def candidate(self, engine):
        """Adopt *engine*'s dialect and cache once it has connected (then its
        dialect is initialized: server version, default schema, isolation
        level), unless another candidate's were adopted first."""
        dialect, cache = engine.dialect, compiled_cache(engine)
        if cache is None:
            return

        def connected(dbapi_connection, record):
            # runs after create_engine's own first-connect listener: the
            # listeners run in order, the first connection's under a mutex
            with self._lock:
                if not self.ready:
                    self.dialect, self.cache = dialect, cache
                    self.ready = True

        event.listen(engine, "connect", connected, once=True)

    def engine(self, url):
        dialect = self.dialect
        cargs, cparams = dialect.create_connect_args(url)
        # the listeners create_engine would add to the pool's connect event,
        # run by the creator instead: the same order (before any listener of
        # the pool's), for a third of the cost of a listener per engine
        setup = [f for f in (dialect.on_connect_url(url),) if f is not None]
        builtin = builtin_on_connect(dialect)

        def connect(connection_record=None):
            args, params = list(cargs), dict(cparams)
            for listener in dialect.dispatch.do_connect:
                made = listener(dialect, connection_record, args, params)
                if made is not None:
                    break
            else:
                made = dialect.connect(*args, **params)
            try:
                for each in setup:
                    each(made)
                if builtin is not None:
                    builtin(made, connection_record)
            except BaseException:
                made.close()
                raise
            return made

        pool = dialect.get_dialect_pool_class(url)(connect, dialect=dialect)
        engine = Engine(
            pool,
            dialect,
            url,
            query_cache_size=0,
            execution_options={"compiled_cache": self.cache},
        )
        type(dialect).engine_created(engine)
        return engine


class SharedDialects:
    """The dialects the engines made here share, by server; thread-safe.

    The core keeps one per engine factory, for the URLs the factory returns;
    a factory that returns Engines (to add listeners of its own) keeps one
    and makes them with :meth:`engine`.
    """

    def __init__(self):
        self._shared = {}
        self._lock = threading.Lock()

    def engine(self, url, make=create_engine):
        """An Engine for *url*, sharing the dialect and compiled cache of the
        engines made here before for the same server; *make(url)* makes one
        alone (the first of a server, or one that cannot share)."""
        url = make_url(url)
        key = share_key(url)
        shared = self._shared.get(key)
        if shared is not None and shared.ready:
            return shared.engine(url)
        engine = make(url)
        if key is None:
            return engine
        if shared is None:
            with self._lock:
                shared = self._shared.get(key)
                if shared is None and len(self._shared) < MAX_SHARED:
                    shared = self._shared[key] = _Shared()
        if shared is not None:
            # an engine made and evicted before it connected must not keep
            # the next ones from sharing: each engine made alone is a candidate
            shared.candidate(engine)
        return engine
