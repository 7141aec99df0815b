"""dbrouter_tenant: a database per tenant, or per album folder.

``config.include("dbrouter_tenant")`` reads the ``dbrouter.tenant.*``
settings and calls the ``config.set_tenant_mode`` directive, which adds the
engine factory of ``tenant:KEY`` engines (kept in the core's bounded LRU,
``dbrouter.max_dynamic_engines``) and the router that sends the models of
``dbrouter.tenant.metadata`` to the current tenant's engine.  Each request
gets ``request.tenant``; scripts and jobs use ``tenant_scope``.

Three modes:

* ``sqlite-folder`` -- ROOT/KEY/FILENAME, one SQLite file per folder (photo
  albums moved, copied and deleted as folders);
* ``database`` -- a database per tenant on one server (the URL of
  ``dbrouter.tenant.url`` with its database set to NAME_PREFIX + KEY);
* ``schema`` -- a PostgreSQL schema per tenant in one engine's database,
  through ``schema_translate_map`` on copies of that engine sharing its pool.

When every tenant lives in one database anyway and tenants are few, a
``tenant_id`` column is simpler: this plugin is for data that must stay
apart, or that travels as files.
"""

from pyramid.config import PHASE1_CONFIG
from pyramid.exceptions import ConfigurationError

from .directive import set_tenant_mode
from .keys import (
    InvalidTenantKey,
    NoTenantError,
    TenantError,
    TenantExists,
    UnknownTenant,
    check_key,
    engine_name,
)
from .lifecycle import copy_tenant, create_tenant, list_tenants, remove_tenant
from .router import TenantRouter
from .scope import current_tenant, request_tenant, tenant_scope
from .settings import MODES, PREFIX
from .tenancy import REGISTRY_KEY, get_tenancy

__all__ = [
    "InvalidTenantKey",
    "NoTenantError",
    "TenantError",
    "TenantExists",
    "TenantRouter",
    "UnknownTenant",
    "check_key",
    "copy_tenant",
    "create_tenant",
    "current_tenant",
    "engine_name",
    "get_tenancy",
    "includeme",
    "list_tenants",
    "remove_tenant",
    "set_tenant_mode",
    "tenant_scope",
]


def includeme(config):
    """Set up tenants from the ``dbrouter.tenant.*`` settings (pyramid_dbrouter
    is included first if it is not yet).  Without those settings the
    application must call ``config.set_tenant_mode`` itself."""
    if not hasattr(config, "add_db_engine_factory"):
        config.include("pyramid_dbrouter")
    config.add_directive("set_tenant_mode", set_tenant_mode)
    config.add_request_method(request_tenant, "tenant", reify=True)
    settings = config.get_settings()
    options = {
        key[len(PREFIX) :]: value
        for key, value in settings.items()
        if key.startswith(PREFIX) and key != PREFIX + "mode"
    }
    if settings.get(PREFIX + "mode") is None and not options:
        config.action(None, _require_tenancy(config), order=PHASE1_CONFIG + 1)
        return
    options.setdefault("metadata", settings.get("dbrouter.metadata"))
    # set_tenant_mode checks every value, as it does when called from code
    config.set_tenant_mode(settings.get(PREFIX + "mode"), **options)


def _require_tenancy(config):
    def check():
        if REGISTRY_KEY not in config.registry:
            raise ConfigurationError(
                f"{PREFIX}mode is required (" + " | ".join(MODES) + "), or a call "
                "of config.set_tenant_mode in the application's main()"
            )

    return check
