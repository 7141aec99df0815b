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

Models that are not archived are left to the rest of the chain.
"""


class ArchiveRouter:
    def __init__(self, archive):
        self.archive = archive

    def __repr__(self):
        return f"<ArchiveRouter {self.archive!r}>"

    def db_for_read(self, model, **hints):
        if not self.archive.covers(model):
            return None
        return self.archive.names

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
                return None  # with its parent, in the archive
        return archive.hot

    def allow_migrate(self, db, model, **hints):
        if db not in self.archive.names or not isinstance(model, type):
            return None
        if self.archive.covers(model):
            return True
        return False if db == self.archive.archive else None
