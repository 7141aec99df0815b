"""The ``sqlite-folder`` mode: tenant KEY is the SQLite file ROOT/KEY/FILENAME.

The photo-album case: every album is a folder with its own database, moved,
copied and deleted as a folder.  Two rules keep that safe while the
application runs:

* connections open the file with SQLite's ``mode=rw``: a missing file is an
  error, never a new empty database (creation is ``create_tenant``'s job);
* each connection remembers which file (device and inode) it opened, and is
  thrown away at checkout when the path now names another file or none: an
  album folder moved away is not written through a connection opened before
  the move, and a folder copied or moved into its place is opened anew.
"""

import os
import shutil
import sqlite3
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from pyramid_dbrouter import SharedDialects

from .attach import AlbumHub
from .keys import InvalidTenantKey, TenantExists, UnknownTenant, check_key, path_under


def _identity(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


class SqliteFolders:
    """Tenants as album folders under one root."""

    name = "sqlite-folder"

    def __init__(self, root, filename, attach_tables=None):
        self.root = root  # a real path (settings resolved it)
        self.filename = filename
        #: dbrouter.tenant.attach: the albums of a transaction attached to
        #: one connection, committed together (see .attach); None when off
        self.hub = None if attach_tables is None else AlbumHub(self, attach_tables)
        # the albums' engines share one dialect and compiled cache: an
        # album opened again does not compile its statements again
        self._dialects = SharedDialects()

    def path(self, key):
        """The real path of tenant *key*'s file, checked to be under the root."""
        return path_under(self.root, check_key(key), self.filename)

    def url(self, key, create=False):
        # an SQLite URI, so that mode=rw can forbid creating the file; the
        # path is percent-quoted as SQLite's URI syntax requires
        return URL.create(
            "sqlite",
            database="file:" + quote(self.path(key)),
            query={"mode": "rwc" if create else "rw", "uri": "true"},
        )

    def exists(self, key):
        try:
            return os.path.isfile(self.path(key))
        except InvalidTenantKey:
            return False

    def engine(self, key):
        """An Engine for tenant *key*, refusing files moved under it."""
        if self.hub is not None:
            return self.hub.engine(key)
        path = self.path(key)
        engine = self._dialects.engine(self.url(key))

        @event.listens_for(engine, "connect")
        def remember_file(dbapi_connection, record):
            record.info["dbrouter.tenant.file"] = _identity(path)

        @event.listens_for(engine, "checkout")
        def same_file(dbapi_connection, record, proxy):
            try:
                now = _identity(path)
            except OSError:
                now = None
            if now != record.info.get("dbrouter.tenant.file"):
                # the pool closes this connection and opens the path again
                # (which fails if the folder is gone: mode=rw)
                raise DisconnectionError(f"{path} was moved or replaced")

        return engine

    def keys(self):
        """The tenants under the root: folders named by a valid key, holding
        the file, whose real path stays under the root."""
        found = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                try:
                    if os.path.isfile(self.path(entry.name)):
                        found.append(entry.name)
                except InvalidTenantKey:
                    continue  # not a tenant's folder (or a symlink out)
        return sorted(found)

    def create(self, key, metadata, tables):
        folder = path_under(self.root, check_key(key))
        if os.path.lexists(folder):
            raise TenantExists(f"tenant {key!r}: {folder} already exists")
        os.mkdir(folder)
        engine = create_engine(self.url(key, create=True), poolclass=NullPool)
        try:
            metadata.create_all(engine, tables=tables)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            engine.dispose()

    def remove(self, key):
        link = os.path.join(self.root, check_key(key))
        # InvalidTenantKey for a folder that resolves outside the root
        if not os.path.isfile(self.path(key)):
            raise UnknownTenant(f"tenant {key!r}: no {self.filename} in {link}")
        if os.path.islink(link):
            # a folder that is a symlink (to another folder under the root):
            # the name goes, the folder it points to may be another tenant's
            os.unlink(link)
        else:
            shutil.rmtree(path_under(self.root, key))

    def dispose(self):
        if self.hub is not None:
            self.hub.dispose()

    def copy(self, source, target):
        """Copy tenant *source* to the new tenant *target*, consistently even
        while it is being written (SQLite's online backup, not a file copy)."""
        folder = path_under(self.root, check_key(target))
        if os.path.lexists(folder):
            raise TenantExists(f"tenant {target!r}: {folder} already exists")
        if not self.exists(source):
            raise UnknownTenant(f"tenant {source!r} does not exist")
        os.mkdir(folder)
        src = sqlite3.connect(f"file:{quote(self.path(source))}?mode=ro", uri=True)
        dst = sqlite3.connect(os.path.join(folder, self.filename))
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
