"""The demo's own router: the search page reads every album at once."""

from dbrouter_tenant import engine_name, get_tenancy, list_tenants


class EveryAlbumRouter:
    """On the search page, reads of the albums' tables go to every album's
    engine: the core runs the statement on each and merges the rows (ordered,
    limited and offset as if one database answered).  Elsewhere it abstains,
    and the tenant plugin's router picks the request's album."""

    def db_for_read(self, model, **hints):
        request = hints.get("request")
        route = getattr(request, "matched_route", None)
        if route is None or route.name != "search":
            return None
        if not get_tenancy(request.registry).owns(model):
            return None
        return [engine_name(key) for key in list_tenants(request.registry)] or None
