"""``Archive``: which engines are hot and archive, which models they hold,
and :func:`get_archive`."""

import threading

from sqlalchemy import inspect
from sqlalchemy.orm.interfaces import MANYTOONE

from pyramid_dbrouter import bind_of, find_router

from .exceptions import ArchiveMoveError, ArchiveReadOnlyError
from .family import family_of

REGISTRY_KEY = "dbrouter_archive"
#: dialects that take part in a two-phase commit (PREPARE TRANSACTION, XA)
TWO_PHASE_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})


class Archive:
    """The hot and archive engines of one application, and its archived models.

    *models* is a list of mapped classes, or None for every model; the
    children of an archived model (its one-to-many relationships) are
    archived with it.  Everything is fixed at start-up; what depends on the
    mappers being configured is found on first use, once.
    """

    def __init__(self, hot, archive, models=None, archive_writes="origin"):
        self.hot = hot
        self.archive = archive
        self.models = None if models is None else tuple(models)
        self.archive_writes = archive_writes
        self.twophase = "auto"  # dbrouter.twophase, set at start-up
        self._covered = None
        self._families = {}
        self._lock = threading.Lock()

    def __repr__(self):
        models = "every model" if self.models is None else len(self.models)
        return f"<Archive hot={self.hot!r} archive={self.archive!r} models={models}>"

    @property
    def names(self):
        return [self.hot, self.archive]

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
        """Whether a move commits copy and delete together: two-phase commit
        with at most one engine that cannot prepare (the last resource)."""
        if self.twophase == "off":
            return False
        one_phase = [
            name
            for name in self.names
            if engines[name].dialect.name not in TWO_PHASE_DIALECTS
        ]
        return len(one_phase) <= 1

    def archived_parent(self, instance):
        """A parent of *instance* (many-to-one) that was loaded from the archive."""
        state = inspect(instance)
        for prop in state.mapper.relationships:
            if prop.direction is not MANYTOONE:
                continue
            parent = state.dict.get(prop.key)
            if parent is not None and bind_of(parent) == self.archive:
                return parent
        return None

    def refuse(self, obj, what):
        raise ArchiveReadOnlyError(
            f"{type(obj).__name__} {inspect(obj).identity} was loaded from the "
            f"archive ({self.archive!r}), which is read-only to the application "
            f"(dbrouter.archive.archive_writes = refuse): not {what}. Nothing was "
            "sent to any database."
        )

    def check_flush(self, session, flush_context, instances):
        """``before_flush`` with ``archive_writes = refuse``: no change of an
        object of the archive, no new child of one."""
        for obj in session.dirty:
            if bind_of(obj) == self.archive and self.covers(type(obj)):
                if session.is_modified(obj, include_collections=False):
                    self.refuse(obj, "changed")
        for obj in session.deleted:
            if bind_of(obj) == self.archive and self.covers(type(obj)):
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
