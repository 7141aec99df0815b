"""Where a request's tenant key comes from (``dbrouter.tenant.resolver``).

A resolver returns the raw key, or None when the request names no tenant;
it never checks the key -- :func:`~dbrouter_tenant.scope.request_tenant`
does, the same way for every resolver, so a custom resolver cannot forget.
"""


def matchdict(name):
    """The route's ``{name}`` segment (Pyramid has percent-decoded it)."""

    def resolve(request):
        return (request.matchdict or {}).get(name)

    return resolve


def header(name):
    """The value of the header *name* (behind a proxy that sets it)."""

    def resolve(request):
        return request.headers.get(name)

    return resolve


def subdomain(domain):
    """KEY of a request to ``KEY.DOMAIN``; None for DOMAIN itself or
    another host.  A deeper name (``a.b.DOMAIN``) is returned whole, and so
    refused by the key check."""
    suffix = "." + domain

    def resolve(request):
        host = (request.host or "").rsplit(":", 1)[0].lower().rstrip(".")
        if host.endswith(suffix) and len(host) > len(suffix):
            return host[: -len(suffix)]
        return None

    return resolve


def make_resolver(settings, maybe_dotted):
    """The resolver that :class:`~dbrouter_tenant.settings.TenantSettings` name."""
    if settings.resolver == "matchdict":
        return matchdict(settings.matchdict_key)
    if settings.resolver == "header":
        return header(settings.header)
    if settings.resolver == "subdomain":
        return subdomain(settings.domain)
    return maybe_dotted(settings.resolver)
