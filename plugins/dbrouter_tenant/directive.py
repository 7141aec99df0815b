"""``config.set_tenant_mode``: the directive that ``includeme`` calls with
the ``dbrouter.tenant.*`` settings.

Pyramid's shape: the arguments are checked when the directive is called (a
``ConfigurationError`` naming the setting), the side effects happen in the
``register`` action at commit, with an introspectable; calling it twice in
one configuration is a ``ConfigurationConflictError``.
"""

from pyramid.config import PHASE1_CONFIG
from pyramid.exceptions import ConfigurationError
from sqlalchemy import event

from pyramid_dbrouter import RoutingSession
from pyramid_dbrouter.settings import mask_url

from .attach import one_session_per_hub
from .keys import ENGINE_PREFIX
from .resolvers import make_resolver
from .router import TenantRouter
from .settings import as_settings, parse_tenant_settings
from .tenancy import REGISTRY_KEY, Tenancy, TenantEngineFactory, make_mode


def _metadata(config, dotted):
    try:
        target = config.maybe_dotted(dotted)
    except (ImportError, ValueError) as exc:
        raise ConfigurationError(
            f"dbrouter.tenant.metadata: cannot import {dotted!r}: {exc}"
        ) from None
    metadata = getattr(target, "metadata", target)
    if not hasattr(metadata, "sorted_tables"):
        raise ConfigurationError(
            f"dbrouter.tenant.metadata: {dotted!r} is neither a MetaData nor a "
            "declarative base"
        )
    return metadata


def set_tenant_mode(config, mode, **options):
    """Serve tenants in *mode* (``sqlite-folder``, ``database``, ``schema``);
    *options* are the ``dbrouter.tenant.*`` settings without their prefix
    (``root``, ``filename``, ``url``, ``engine``, ``name_prefix``,
    ``resolver``, ``matchdict_key``, ``header``, ``domain``, ``metadata``)."""
    settings = parse_tenant_settings(as_settings(mode, options))
    resolver = make_resolver(settings, config.maybe_dotted)
    if not callable(resolver):
        raise ConfigurationError(
            f"dbrouter.tenant.resolver: {settings.resolver!r} is not callable; "
            "a resolver takes the request and returns a key or None"
        )
    metadata = _metadata(config, settings.metadata)
    # nothing here connects or opens a file: the modes make engines on first use
    tenancy = Tenancy(
        settings, make_mode(settings, config.registry, metadata), resolver, metadata
    )
    where = settings.root or mask_url(settings.url or "") or settings.engine
    intr = config.introspectable(
        "dbrouter tenancy", "tenancy", f"{settings.mode}: {where}", "dbrouter tenancy"
    )
    intr["mode"] = settings.mode
    intr["resolver"] = settings.resolver

    def register():
        config.registry[REGISTRY_KEY] = tenancy
        if settings.attach and not event.contains(
            RoutingSession, "after_begin", one_session_per_hub
        ):
            event.listen(RoutingSession, "after_begin", one_session_per_hub)

    config.add_db_engine_factory(ENGINE_PREFIX, TenantEngineFactory(tenancy))
    config.add_db_router(TenantRouter(tenancy), name="dbrouter_tenant.TenantRouter")
    config.action(
        ("dbrouter-tenancy",), register, order=PHASE1_CONFIG, introspectables=(intr,)
    )
