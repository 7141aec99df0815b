"""The current tenant: ``request.tenant`` in a request, ``tenant_scope``
in scripts and jobs.

Outside requests the tenant is a :mod:`contextvars` variable, set for the
length of one ``tenant_scope`` block and reset when it ends -- also when it
raises -- so a worker thread that runs job after job never carries one job's
tenant into the next, and threads never see each other's.
"""

from contextlib import contextmanager
from contextvars import ContextVar

from pyramid.httpexceptions import HTTPNotFound

from pyramid_dbrouter import session_scope

from .keys import NoTenantError, TenantError
from .tenancy import get_tenancy

_current = ContextVar("dbrouter_tenant", default=None)


def request_tenant(request):
    """``request.tenant``: the request's tenant key, checked; None when the
    request names none.  A key that is not valid, or names no tenant, is
    an HTTP 404 (the same answer for both: the response does not tell an
    attacker which keys are well-formed)."""
    tenancy = get_tenancy(request.registry)
    raw = tenancy.resolver(request)
    if raw is None:
        return None
    try:
        return tenancy.require(raw)
    except TenantError:
        raise HTTPNotFound("no such tenant") from None


def current_tenant(request=None):
    """The tenant key in effect: the request's, else the ``tenant_scope``'s."""
    if request is not None:
        key = request.tenant
        if key is not None:
            return key
    return _current.get()


def require_tenant(request=None):
    key = current_tenant(request)
    if key is None:
        raise NoTenantError(
            "a tenant's model was used with no current tenant: in a request, "
            "the route or host must name one (dbrouter.tenant.resolver); "
            "elsewhere, use tenant_scope(registry, key)"
        )
    return key


@contextmanager
def tenant_scope(registry, key):
    """One transaction on tenant *key*, for scripts and jobs::

        with tenant_scope(env["registry"], "summer-2024") as dbsession:
            dbsession.add(Photo(title="dawn"))   # committed when the block ends

    *key* is checked and must exist (UnknownTenant otherwise).  Blocks nest;
    the innermost tenant is current, and the previous one is back after it.
    """
    get_tenancy(registry).require(key)
    token = _current.set(key)
    try:
        with session_scope(registry) as dbsession:
            yield dbsession
    finally:
        _current.reset(token)
