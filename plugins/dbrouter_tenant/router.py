"""The router that sends a tenant's models to ``tenant:KEY``.

A model is a tenant's when its table is in ``dbrouter.tenant.metadata``;
other models are left to the next router (shared tables stay on
``default``).  With no current tenant, using a tenant's model is an error,
not a silent fall-back to ``default``: one tenant's rows must never land in
a shared database.
"""

from .keys import ENGINE_PREFIX
from .scope import require_tenant


class TenantRouter:
    def __init__(self, tenancy):
        self.tenancy = tenancy

    def _route(self, model, hints):
        if model is None or not self.tenancy.owns(model):
            return None
        return f"{ENGINE_PREFIX}:{require_tenant(hints.get('request'))}"

    def db_for_read(self, model, **hints):
        return self._route(model, hints)

    def db_for_write(self, model, **hints):
        return self._route(model, hints)

    def allow_migrate(self, db, model, **hints):
        """Tenant tables on tenant engines only; other tables nowhere there."""
        table = hints.get("table")
        if db.startswith(ENGINE_PREFIX + ":"):
            return table in self.tenancy.tables
        return False if table in self.tenancy.tables else None
