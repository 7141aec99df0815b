"""The routers of the test application, consulted in the order of the
``dbrouter.routers`` setting."""

from .models import Photo, Tag


class PhotoRouter:
    """Photos are written to ``default`` and read from ``default`` and
    ``archive``, merged."""

    def db_for_read(self, model, **hints):
        return ["default", "archive"] if model is Photo else None

    def db_for_write(self, model, **hints):
        return "default" if model is Photo else None


class ArchiveOnlyPhotos:
    """The ``archive`` database holds photos and nothing else."""

    def allow_migrate(self, db, model, **hints):
        return model is Photo if db == "archive" else None


class TypoRouter:
    """Sends tags to an engine that does not exist (``archvie``)."""

    def db_for_write(self, model, **hints):
        return "archvie" if model is Tag else None
