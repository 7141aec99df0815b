"""Tenant keys: checked before they become a path, a URL or an identifier.

A key comes from a request (a URL segment, a host name, a header), so it is
hostile until proven otherwise.  The pattern is deliberately narrower than
the core's ``PREFIX:KEY`` check: lower-case ASCII letters, digits, ``_`` and
``-``, starting with a letter or digit, at most 48 characters.  That leaves
out, by construction, separators, ``.`` and ``..``, NUL, ``%``, ``?``, ``#``,
white space, absolute paths and every Unicode look-alike; and, being
lower-case, it names one folder on case-insensitive file systems and one
PostgreSQL identifier without quoting rules in the way.
"""

import os
import re
import stat

from pyramid_dbrouter import DBRouterError

#: always used with ``fullmatch``: ``$`` would accept a final newline
KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
#: the engine of tenant KEY is ``tenant:KEY`` (the core's factory LRU)
ENGINE_PREFIX = "tenant"


class TenantError(DBRouterError):
    """Something about a tenant: a request answers it with 404."""


class InvalidTenantKey(TenantError, ValueError):
    """A key that is not a safe tenant name."""


class UnknownTenant(TenantError, LookupError):
    """A well-formed key with no tenant behind it (creation is explicit)."""


class TenantExists(TenantError):
    """``create_tenant`` of a tenant that is already there."""


class NoTenantError(TenantError):
    """A tenant's model was used with no tenant current (no request tenant,
    no ``tenant_scope``)."""


def check_key(key):
    """Return *key* if it is a safe tenant key, else raise InvalidTenantKey."""
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise InvalidTenantKey(
            f"{key!r:.80} is not a tenant key: use 1 to 48 lower-case ASCII letters, "
            "digits, '_' or '-', starting with a letter or digit"
        )
    return key


def engine_name(key):
    """The core's engine name of tenant *key*: ``tenant:KEY``."""
    return f"{ENGINE_PREFIX}:{check_key(key)}"


def path_under(root, *parts):
    """The real path of ``root/parts...`` (symlinks resolved), or
    InvalidTenantKey if it is not strictly inside *root* (itself a real path).

    Checked on the resolved path, not the string: a folder that is a symlink
    to somewhere else is refused, however innocent its name.
    """
    joined = os.path.join(root, *parts)
    if _without_links(root, parts):
        return joined  # its own real path: nothing to resolve
    real = os.path.realpath(joined)
    if real == root or os.path.commonpath([root, real]) != root:
        raise InvalidTenantKey(
            f"{os.sep.join(parts)!r} resolves to {real!r}, outside the tenant "
            f"root {root!r}"
        )
    return real


def _without_links(root, parts):
    """Whether ``root/parts...`` exists with no component below *root* a
    symbolic link, ``.``, ``..`` or empty: then the joined path is its real
    path, found with one ``lstat`` per component instead of ``realpath``'s
    walk from ``/`` (a request's tenant is checked on every request)."""
    if not parts:
        return False
    path = root
    for part in parts:
        if os.altsep and os.altsep in part:
            return False
        for name in part.split(os.sep):
            if name in ("", ".", ".."):
                return False
            path = os.path.join(path, name)
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    return False
            except (OSError, ValueError):  # missing, or a NUL in the name
                return False
    return True
