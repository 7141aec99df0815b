"""``ArchiveRouter``: archived models read from hot and archive as one.

* reads (statements): both engines, hot first, through the core's fan-out
  (merged, ordered and limited as one database would answer); the session
  keeps one row per identity, hot's (``fanout_unique="first"``);
* ``get()``: hot, then archive (the core's fan-out ``get``);
* new objects: hot -- except a new child of an object loaded from the
  archive, which goes with its parent (the core's instance hint), or is
  refused with ``archive_writes = refuse``;
* objects that were loaded are written back where they came from (the
  core's rule), or refused from the archive (``refuse``, at flush);
* tables: the archived models' on both engines, no other table on the archive.

With ``hot = PREFIX:*`` (an archive per key: ``tenant:*`` and
``archive:*``), the hot engine is whatever the routers after this one
answer for the model -- the request's ``tenant:alps`` -- and reads go to it
and to the archive of the same key, ``archive:alps``; writes are left to
those routers.

Models that are not archived are left to the rest of the chain.
"""

from pyramid_dbrouter import bind_of


class ArchiveRouter:
    def __init__(self, archive):
        self.archive = archive

    def __repr__(self):
        return f"<ArchiveRouter {self.archive!r}>"

    def db_for_read(self, model, **hints):
        archive = self.archive
        if not archive.covers(model):
            return None
        if not archive.per_key:
            return archive.names
        session = hints.get("session")
        answer, _router = archive.rest(session).first_read(model, **hints)
        if answer is None:
            archive.hot_for(session, model, **hints)  # raises, naming why
        # each hot engine, then its archive: hot's copy of a row in both wins
        names = []
        for name in [answer] if isinstance(answer, str) else answer:
            names.append(name)
            if archive.is_hot(name):
                names.append(archive.archive_of(name))
        return names

    def db_for_write(self, model, **hints):
        archive = self.archive
        if not archive.covers(model):
            return None
        instance = hints.get("instance")
        if instance is not None:
            parent = archive.archived_parent(instance)
            if parent is not None:
                if archive.archive_writes == "refuse":
                    archive.refuse(parent, f"given a new {model.__name__}")
                # with its parent, in the archive (said outright per key: the
                # routers after this one would send it to hot)
                return bind_of(parent) if archive.per_key else None
        return None if archive.per_key else archive.hot

    def allow_migrate(self, db, model, **hints):
        archive = self.archive
        hot, archived = archive.is_hot(db), archive.is_archive(db)
        if not (hot or archived) or not isinstance(model, type):
            return None
        if archive.covers(model) or (archived and model in archive.references):
            return True
        return False if archived else None
