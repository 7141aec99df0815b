"""One application's tenancy: its mode, resolver and tenant tables.

Made by the ``set_tenant_mode`` action and kept on the registry; the engine
factory, the router, ``request.tenant`` and the lifecycle functions all
read it from there, so that nothing is module-global.
"""

from .folders import SqliteFolders
from .keys import ENGINE_PREFIX, UnknownTenant, check_key
from .servers import Databases, Schemas

REGISTRY_KEY = "dbrouter.tenant"


def get_tenancy(registry):
    """The application's :class:`Tenancy`; an error if the plugin is not
    configured (``config.include("dbrouter_tenant")``)."""
    tenancy = registry.get(REGISTRY_KEY)
    if tenancy is None:
        raise LookupError(
            "dbrouter_tenant is not configured for this application: "
            'config.include("dbrouter_tenant") with dbrouter.tenant.mode set'
        )
    return tenancy


def make_mode(settings, registry, metadata=None):
    if settings.mode == "sqlite-folder":
        if not settings.attach:
            return SqliteFolders(settings.root, settings.filename)
        tables = [t.name for t in metadata.sorted_tables] if metadata else []
        return SqliteFolders(settings.root, settings.filename, attach_tables=tables)
    if settings.mode == "database":
        return Databases(settings.url, settings.name_prefix)
    return Schemas(registry, settings.engine, settings.name_prefix)


class Tenancy:
    def __init__(self, settings, mode, resolver, metadata):
        self.settings = settings
        self.mode = mode
        self.resolver = resolver
        self.metadata = metadata
        self.tables = frozenset(metadata.sorted_tables)
        self._owned = {}

    def require(self, key):
        """*key*, checked and existing; InvalidTenantKey or UnknownTenant."""
        check_key(key)
        if not self.mode.exists(key):
            raise UnknownTenant(f"there is no tenant {key!r}")
        return key

    def owns(self, model):
        """Whether *model* (a mapped class, or None) is a tenant's model."""
        try:
            return self._owned[model]
        except KeyError:
            # cached per class: asked for every statement
            owned = getattr(model, "__table__", None) in self.tables
            self._owned[model] = owned
            return owned
        except TypeError:  # not hashable: not a mapped class
            return False


class TenantEngineFactory:
    """The core's engine factory for ``tenant:KEY``.

    ``keys(settings)`` lists every tenant, so that ``dbrouter recover`` and
    ``dbrouter init-db --all-tenants`` reach engines not open yet.
    """

    def __init__(self, tenancy):
        self.tenancy = tenancy

    def __call__(self, key, settings):
        # checked again: ``using_bind("tenant:X")`` reaches here without a request
        return self.tenancy.mode.engine(self.tenancy.require(key))

    def keys(self, settings):
        return self.tenancy.mode.keys()

    def __repr__(self):
        return f"<tenant engines {ENGINE_PREFIX}:KEY, {self.tenancy.mode.name} mode>"
