"""Listing, creating, copying and removing tenants.

Creation is always explicit: a request for a tenant that does not exist is
a 404, never an empty database made on the fly.  Removal closes the
tenant's engine first, so that no pooled connection keeps writing to a file
or database being deleted.
"""

from pyramid_dbrouter import dispose_engine

from .keys import check_key, engine_name
from .tenancy import get_tenancy


def list_tenants(registry):
    """The keys of every tenant, sorted."""
    return get_tenancy(registry).mode.keys()


def create_tenant(registry, key):
    """Create tenant *key* -- its folder, database or schema, and the tables
    of ``dbrouter.tenant.metadata`` -- and return *key*.  TenantExists if it
    is already there."""
    tenancy = get_tenancy(registry)
    check_key(key)
    # an engine left open from a tenant of that name removed behind our back
    dispose_engine(registry, engine_name(key))
    tenancy.mode.create(key, tenancy.metadata, tenancy.metadata.sorted_tables)
    return key


def remove_tenant(registry, key):
    """Remove tenant *key* and everything in it, its engine closed first.
    UnknownTenant if there is none."""
    tenancy = get_tenancy(registry)
    check_key(key)
    dispose_engine(registry, engine_name(key))
    tenancy.mode.remove(key)


def copy_tenant(registry, source, target):
    """Copy tenant *source* into the new tenant *target* (sqlite-folder mode:
    SQLite's online backup, consistent while *source* is being written)."""
    mode = get_tenancy(registry).mode
    if not hasattr(mode, "copy"):
        raise NotImplementedError(
            f"copy_tenant: the {mode.name} mode has no copy; use the server's own "
            "tools (CREATE DATABASE ... TEMPLATE, pg_dump)"
        )
    mode.copy(check_key(source), check_key(target))
    return target
