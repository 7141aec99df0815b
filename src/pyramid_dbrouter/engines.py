"""The named engines of an application, and engines made on demand.

An :class:`EngineRegistry` maps names to :class:`~sqlalchemy.engine.Engine`
objects.  Static engines come from the settings or ``add_db_engine``;
engines named ``PREFIX:KEY`` are made on first use by the factory that
``add_db_engine_factory`` registered for ``PREFIX`` and kept in a bounded
LRU, so that ten thousand tenants do not mean ten thousand open pools.

Creating an engine never connects: start-up works with every database down.
"""

import re
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from sqlalchemy import engine_from_config
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from .exceptions import ConfigurationError, UnknownBindError
from .masking import mask_url
from .settings import DEFAULT, PREFIX, EngineSpec, check_url, parse_engines
from .shared_dialects import SharedDialects

#: keys of dynamic engines come from requests (tenant, folder): keep them to
#: a set of characters that is safe in a path, a URL and a log line; always
#: used with ``fullmatch`` (``$`` alone would accept a trailing newline)
DYNAMIC_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: evicted engines are handed to a worker thread to be closed this many at a
#: time (a thread switch per miss costs more than closing an SQLite file);
#: past RETIRING_BACKLOG waiting, the request that evicts one closes them all
RETIRING_BATCH = 8
RETIRING_BACKLOG = 16


def make_engine(spec):
    """The one way an engine is made from an :class:`EngineSpec`: the Engine
    given, or ``engine_from_config``'s (string options coerced by the
    dialect), with errors that name the settings keys."""
    if spec.engine is not None:
        return spec.engine
    config = {f"{PREFIX}{k}": v for k, v in spec.options.items()}
    config[f"{PREFIX}url"] = spec.url
    try:
        return engine_from_config(config, prefix=PREFIX)
    except TypeError as exc:
        shown = PREFIX if spec.name == DEFAULT else f"{PREFIX}{spec.name}."
        raise ConfigurationError(
            f"{shown}*: invalid engine option for engine {spec.name!r} "
            f"({mask_url(spec.url)}): {exc}; options given: "
            + ", ".join(sorted(spec.options))
        ) from None


def get_engine(settings, prefix=PREFIX):
    """Return the ``default`` engine from *settings* (cookiecutter-starter's
    ``get_engine``), skipping the other engines' ``sqlalchemy.NAME.*`` keys."""
    return make_engine(parse_engines(settings, prefix)[DEFAULT])


class EngineRegistry:
    """Engines by name, static and made on demand; thread-safe."""

    def __init__(self, max_dynamic_engines=32, settings=None):
        self.max_dynamic_engines = max_dynamic_engines
        self.settings = settings or {}
        self._static = {}
        self._factories = {}
        self._dynamic = OrderedDict()
        #: prefix -> the dialects its factory's engines share, by server
        self._shared = {}
        #: the dynamic engines made here from a factory's URL
        self._made = weakref.WeakSet()
        self._retiring = []
        self._draining = False
        self._names = {}
        #: replica name -> its primary's name (``add_db_engine(replica_of=)``)
        self._replica_of = {}
        self._lock = threading.Lock()
        self._pool = None
        #: called with each engine a factory makes (write tracking)
        self.on_new_engine = None

    # -- configuration (called from config actions) -------------------------

    def add(self, name, engine):
        self._static[name] = engine
        self._names[id(engine)] = name

    def add_factory(self, prefix, factory):
        self._factories[prefix] = factory
        self._shared[prefix] = SharedDialects()

    def set_replica_of(self, name, primary):
        """Declare the engine *name* a replica of *primary*: its objects take
        the primary's identity (written to the primary, loaded in the group)."""
        self._replica_of[name] = primary

    def primary_of(self, name):
        """The primary of a replica, or *name* itself for any other engine."""
        return self._replica_of.get(name, name)

    @property
    def replicas(self):
        """``{replica name: primary name}``."""
        return dict(self._replica_of)

    def identity_token(self, name):
        """The ``identity_token`` of objects loaded from *name*: the engine's
        own name, its primary's for a replica, None for ``default``'s."""
        name = self._replica_of.get(name, name)
        return None if name == DEFAULT else name

    # -- lookup --------------------------------------------------------------

    def names(self):
        """The static engine names, ``default`` first."""
        rest = sorted(n for n in self._static if n != DEFAULT)
        return [DEFAULT, *rest] if DEFAULT in self._static else rest

    def known(self):
        return self.names() + [f"{p}:KEY" for p in sorted(self._factories)]

    def static_items(self):
        return [(name, self._static[name]) for name in self.names()]

    @property
    def factories(self):
        return dict(self._factories)

    def is_multi(self):
        return len(self._static) > 1 or bool(self._factories)

    def get(self, name, source=None):
        """The engine named *name*; :class:`UnknownBindError` if there is none."""
        try:
            engine = self._static.get(name)
            if engine is not None:
                return engine
            # a hit: the name was checked when its engine was made
            engine = self._dynamic.get(name)
        except TypeError:  # not a name at all
            engine = None
        if engine is not None:
            with self._lock:
                if name in self._dynamic:
                    self._dynamic.move_to_end(name)
            return engine
        if isinstance(name, str) and ":" in name:
            prefix, _, key = name.partition(":")
            if prefix in self._factories:
                return self._dynamic_engine(name, prefix, key)
        raise UnknownBindError(name, self.known(), source)

    def name_of(self, engine):
        """The name an engine was registered under (None if it is not ours)."""
        return self._names.get(id(engine))

    def _dynamic_engine(self, name, prefix, key):
        if not DYNAMIC_KEY.fullmatch(key) or ".." in key:
            raise UnknownBindError(name, self.known(), "an invalid key")
        with self._lock:
            engine = self._dynamic.get(name)
            if engine is not None:
                self._dynamic.move_to_end(name)
                return engine
        made = self._factories[prefix](key, self.settings)
        ours = isinstance(made, str | URL)
        if ours:
            where = f"engine factory {prefix!r}"
            try:
                url = make_url(made)
            except ArgumentError:
                url = check_url(made, where)  # raises, naming the factory

            def alone(url):
                # the first engine of a server: its dialect is checked here
                return make_engine(EngineSpec(name, check_url(url, where)))

            made = self._shared[prefix].engine(url, alone)
        elif not isinstance(made, Engine):
            raise ConfigurationError(
                f"engine factory {prefix!r} returned {made!r} for key {key!r}; "
                "expected a database URL or an Engine"
            )
        evicted = []
        with self._lock:
            engine = self._dynamic.setdefault(name, made)
            self._dynamic.move_to_end(name)
            self._names[id(engine)] = name
            while len(self._dynamic) > self.max_dynamic_engines:
                old_name, old = self._dynamic.popitem(last=False)
                self._names.pop(id(old), None)
                evicted.append(old)
        if engine is not made:
            made.dispose()
        else:
            if ours:
                with self._lock:
                    self._made.add(engine)
            if self.on_new_engine is not None:
                self.on_new_engine(engine)
        if evicted:
            self._retire(evicted)
        return engine

    def _retire(self, engines):
        """Close the idle connections of evicted engines off the request's
        path, in batches; connections still checked out finish their work.
        At most RETIRING_BATCH - 1 evicted engines stay open past
        ``max_dynamic_engines``, until the next evictions."""
        with self._lock:
            self._retiring.extend(engines)
            waiting = len(self._retiring)
            if waiting > RETIRING_BACKLOG:
                # the worker falls behind (a loaded machine): this request
                # closes them, so that open files stay bounded
                engines = self._take_retiring()
            elif self._draining or waiting < RETIRING_BATCH:
                return
            else:
                self._draining = True
                engines = None
        if engines is not None:
            self._close(*engines)
        else:
            self.executor().submit(self._drain)

    def _take_retiring(self):
        engines, self._retiring = self._retiring, []
        ours = [e in self._made for e in engines]
        self._made.difference_update(engines)
        return engines, ours

    def _drain(self):
        while True:
            with self._lock:
                if not self._retiring:
                    self._draining = False
                    return
                engines = self._take_retiring()
            self._close(*engines)

    @staticmethod
    def _close(engines, ours):
        for engine, made_here in zip(engines, ours, strict=True):
            # a connection that fails to close is dropped all the same;
            # the next engines must still be retired
            with suppress(Exception):
                if made_here:
                    # its pool is its own: closing the idle connections
                    # is enough (dispose() would make a new pool as well)
                    engine.pool.dispose()
                else:
                    engine.dispose()

    def discard(self, name):
        """Close and forget the dynamic engine *name*, if it is open (a tenant
        removed, or a folder moved): the next use makes it anew.  Returns
        whether it was open."""
        with self._lock:
            engine = self._dynamic.pop(name, None)
            if engine is not None:
                self._names.pop(id(engine), None)
        if engine is None:
            return False
        engine.dispose()
        return True

    def open_dynamic_names(self):
        with self._lock:
            return list(self._dynamic)

    # -- fan-out workers -----------------------------------------------------

    def executor(self):
        """A bounded thread pool for fan-out reads, made on first use."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=8, thread_name_prefix="dbrouter-fanout"
                    )
        return self._pool

    def dispose(self):
        """Close every pool (for scripts and tests)."""
        with self._lock:
            dynamic = list(self._dynamic.values()) + self._retiring
            self._dynamic.clear()
            self._retiring = []
            pool, self._pool = self._pool, None
        for engine in [*self._static.values(), *dynamic]:
            engine.dispose()
        if pool is not None:
            pool.shutdown(wait=False)


def engine_spec(name, url, engine, options):
    """Check ``add_db_engine``'s arguments now; return the engine's spec."""
    if engine is not None:
        if url is not None or options:
            raise ConfigurationError(
                f"add_db_engine({name!r}): pass either engine= or a url with "
                "options, not both"
            )
        if not isinstance(engine, Engine):
            raise ConfigurationError(
                f"add_db_engine({name!r}): engine={engine!r} is not an Engine"
            )
        return EngineSpec(name, engine=engine)
    if url is None:
        raise ConfigurationError(f"add_db_engine({name!r}): a url or engine= is needed")
    key = f"{PREFIX}url" if name == DEFAULT else f"{PREFIX}{name}.url"
    parsed = make_url(url) if isinstance(url, URL) else check_url(url, key)
    return EngineSpec(name, parsed, dict(options))
