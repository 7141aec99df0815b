"""``Replicas``: what one application configured, and :func:`get_replicas`."""

REGISTRY_KEY = "dbrouter_replica"


class Replicas:
    """The groups (``{primary: [replica, ...]}``), their breakers
    (:class:`~dbrouter_replica.health.Health`), the pin cookie's
    :class:`~dbrouter_replica.pinning.Pin` (None when ``pin_seconds = 0``)
    and the router.  Everything but the breakers is fixed at start-up."""

    def __init__(self, groups, health, pin):
        self.groups = groups
        self.health = health
        self.pin = pin
        self.router = None
        self.engines = {}
        #: replica name -> primary name
        self.primary_of = {r: p for p, rs in groups.items() for r in rs}

    def __repr__(self):
        groups = "; ".join(f"{p}: {' '.join(rs)}" for p, rs in self.groups.items())
        return f"<Replicas {groups}>"

    def engine(self, name):
        return self.engines[name]

    def status(self):
        """``{replica: (in service?, last lag or None, why it is out)}``."""
        now = self.health.clock()
        found = {}
        for name in self.primary_of:
            state = self.health.state(name)
            out = state.out_until > now
            found[name] = (not out, state.lag, state.reason if out else None)
        return found


def get_replicas(context):
    """The application's :class:`Replicas`, from a registry or a request."""
    registry = getattr(context, "registry", context)
    try:
        return registry[REGISTRY_KEY]
    except (KeyError, TypeError):
        raise LookupError(
            "no replicas configured here: include dbrouter_replica with "
            "dbrouter.replica.replicas set, or call config.add_db_replicas()"
        ) from None
