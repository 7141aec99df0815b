"""``Archive``: which engines are hot and archive, which models they hold,
and :func:`get_archive`."""

import threading

from sqlalchemy import inspect
from sqlalchemy.orm.interfaces import MANYTOONE

from pyramid_dbrouter import RouterChain, bind_of, find_router

from .exceptions import ArchiveMoveError, ArchiveReadOnlyError
from .family import family_of
from .settings import per_key_prefix

REGISTRY_KEY = "dbrouter_archive"
#: dialects that take part in a two-phase commit (PREPARE TRANSACTION, XA)
TWO_PHASE_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})


class Archive:
    """The hot and archive engines of one application, and its archived models.

    *hot* and *archive* are engine names, or both ``PREFIX:*``: then the hot
    engine of a row is whatever the routers after the archive's answer for
    its model (``tenant:alps``, the request's tenant), and its archive the
    engine of the same key (``archive:alps``).  *models* is a list of mapped
    classes, or None for every model; the children of an archived model
    (its one-to-many relationships) are archived with it.  *references* are
    models whose rows are copied, not moved, when an archived row refers to
    them (many-to-one).  Everything is fixed at start-up; what depends on
    the mappers being configured is found on first use, once.
    """

    def __init__(
        self, hot, archive, models=None, archive_writes="origin", references=()
    ):
        self.hot = hot
        self.archive = archive
        self.hot_prefix = per_key_prefix(hot)
        self.archive_prefix = per_key_prefix(archive)
        self.models = None if models is None else tuple(models)
        self.references = tuple(references or ())
        self.archive_writes = archive_writes
        self.twophase = "auto"  # dbrouter.twophase, set at start-up
        self._covered = None
        self._families = {}
        self._rest = None
        self._lock = threading.Lock()

    def __repr__(self):
        models = "every model" if self.models is None else len(self.models)
        return f"<Archive hot={self.hot!r} archive={self.archive!r} models={models}>"

    @property
    def names(self):
        return [self.hot, self.archive]

    @property
    def per_key(self):
        return self.hot_prefix is not None

    def is_hot(self, name):
        if self.hot_prefix is None:
            return name == self.hot
        return isinstance(name, str) and name.startswith(self.hot_prefix + ":")

    def is_archive(self, name):
        if self.archive_prefix is None:
            return name == self.archive
        return isinstance(name, str) and name.startswith(self.archive_prefix + ":")

    def archive_of(self, hot):
        """The archive engine of the hot engine *hot*: ``archive:alps`` for
        ``tenant:alps`` (the same key), or the archive engine."""
        if not self.is_hot(hot):
            raise ArchiveMoveError(
                f"{hot!r} is not a hot engine of this archive "
                f"(dbrouter.archive.hot = {self.hot})"
            )
        if self.hot_prefix is None:
            return self.archive
        return f"{self.archive_prefix}:{hot[len(self.hot_prefix) + 1 :]}"

    def pair_of(self, name):
        """The core's ``fanout_unique`` group of engine *name*: per key, a
        hot engine and its archive are one group -- a row in both (a move
        between its copy and its delete) is read once, hot's -- and every
        other engine a group of its own, so that rows of other keys sharing
        an id are never taken for repeats."""
        for prefix in (self.hot_prefix, self.archive_prefix):
            if name.startswith(prefix + ":"):
                return ("key", name[len(prefix) + 1 :])
        return ("engine", name)

    def rest(self, session):
        """The routers after the archive's, asked for the hot engine of a
        ``PREFIX:*`` archive (found once: the chain is fixed at start-up)."""
        rest = self._rest
        if rest is None:
            from .router import ArchiveRouter

            chain = getattr(session, "routers", None)
            if chain is None:
                raise ArchiveMoveError(
                    f"dbrouter.archive.hot = {self.hot}: the hot engine is chosen "
                    "by the routers of a session; none was given (the session hint)"
                )
            routers = chain.routers
            mine = [
                i
                for i, r in enumerate(routers)
                if isinstance(r, ArchiveRouter) and r.archive is self
            ]
            rest = self._rest = RouterChain(routers[mine[0] + 1 :] if mine else ())
        return rest

    def hot_for(self, session, model, hot=None, **hints):
        """The hot engine of *model*'s rows in *session*: *hot* if given (it
        must be one), else the fixed hot engine, else the one the routers
        after the archive's choose for writing the model."""
        if hot is not None:
            self.archive_of(hot)  # checks it
            return hot
        if self.hot_prefix is None:
            return self.hot
        hints.setdefault("request", session.info.get("request"))
        hints.setdefault("session", session)
        answer, _router = self.rest(session).first_write(model, **hints)
        if not self.is_hot(answer):
            raise ArchiveMoveError(
                f"dbrouter.archive.hot = {self.hot}: the routers after "
                f"dbrouter_archive's sent {model.__name__} to {answer!r}, not to "
                f"an engine {self.hot_prefix}:KEY (in a request, the router that "
                "picks it -- dbrouter_tenant's, say -- must be added after "
                "dbrouter_archive's; in a script, name the hot engine: hot=...)"
            )
        return answer

    def covers(self, model):
        """Whether *model*'s rows live in hot and archive."""
        if model is None:
            return False
        if self.models is None:
            return True
        covered = self._covered
        if covered is None:
            with self._lock:
                covered = self._covered = frozenset(
                    member.mapper.class_
                    for listed in self.models
                    for member in family_of(listed)
                )
        return model in covered

    def family(self, model):
        """The tables that move with *model*'s rows (see :mod:`.family`)."""
        found = self._families.get(model)
        if found is None:
            if not self.covers(model):
                raise ArchiveMoveError(
                    f"{model.__name__} is not an archived model "
                    f"(dbrouter.archive.models: "
                    f"{', '.join(m.__name__ for m in self.models)})"
                )
            found = self._families[model] = family_of(model)
        return found

    def atomic(self, engines):
        """Whether a move commits copy and delete together (*engines*: its
        hot and archive Engines): two-phase commit with at most one engine
        that cannot prepare (the last resource)."""
        if self.twophase == "off":
            return False
        one_phase = [
            engine
            for engine in engines
            if engine.dialect.name not in TWO_PHASE_DIALECTS
        ]
        return len(one_phase) <= 1

    def archived_parent(self, instance):
        """A parent of *instance* (many-to-one) that was loaded from the archive."""
        state = inspect(instance)
        for prop in state.mapper.relationships:
            if prop.direction is not MANYTOONE:
                continue
            parent = state.dict.get(prop.key)
            if parent is not None and self.is_archive(bind_of(parent)):
                return parent
        return None

    def refuse(self, obj, what):
        raise ArchiveReadOnlyError(
            f"{type(obj).__name__} {inspect(obj).identity} was loaded from the "
            f"archive ({bind_of(obj)!r}), which is read-only to the application "
            f"(dbrouter.archive.archive_writes = refuse): not {what}. Nothing was "
            "sent to any database."
        )

    def check_flush(self, session, flush_context, instances):
        """``before_flush`` with ``archive_writes = refuse``: no change of an
        object of the archive, no new child of one."""
        for obj in session.dirty:
            if self.is_archive(bind_of(obj)) and self.covers(type(obj)):
                if session.is_modified(obj, include_collections=False):
                    self.refuse(obj, "changed")
        for obj in session.deleted:
            if self.is_archive(bind_of(obj)) and self.covers(type(obj)):
                self.refuse(obj, "deleted")
        for obj in session.new:
            parent = self.archived_parent(obj)
            if parent is not None and self.covers(type(obj)):
                self.refuse(parent, f"given a new {type(obj).__name__}")


def get_archive(context):
    """The application's :class:`Archive`, from a registry, a request or a
    session (the session of ``session_scope`` in a script, say)."""
    from .router import ArchiveRouter

    router = find_router(context, ArchiveRouter)
    if router is not None:
        return router.archive
    registry = getattr(context, "registry", context)
    try:
        return registry[REGISTRY_KEY]
    except (KeyError, TypeError):
        raise LookupError(
            "no archive configured here: include dbrouter_archive with "
            "dbrouter.archive.archive set, or call config.add_db_archive()"
        ) from None
