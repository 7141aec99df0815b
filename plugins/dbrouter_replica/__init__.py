"""dbrouter_replica: reads from streaming replicas, writes to the primary.

``config.include("dbrouter_replica")`` (after ``pyramid_dbrouter``) adds the
directive ``config.add_db_replicas`` and calls it with the
``dbrouter.replica.*`` settings::

    sqlalchemy.url = postgresql+psycopg://app@primary/app
    sqlalchemy.replica1.url = postgresql+psycopg://app@replica1/app
    dbrouter.replica.replicas = replica1
    dbrouter.replica.secret = (at least 16 random characters)

Writes, ``SELECT ... FOR UPDATE`` and the reads of a transaction that wrote
go to the primary; other reads to a replica in service, skipping one that is
down or lagging (a circuit breaker), else to the primary.  A client that
wrote reads from the primary for ``pin_seconds`` (a signed cookie), and
``use_primary()`` reads from the primary in scripts.  Objects read from a
replica are the primary's (the core's ``add_db_replica``).

Replicas are worth it when reads outnumber writes and the primary is busy;
an application that must always read what any client just wrote, or whose
reads are few, is simpler and no slower on its primary alone.
"""

from .directive import add_db_replicas
from .pinning import COOKIE, pinned, use_primary
from .replicas import Replicas, get_replicas
from .router import ReplicaRouter
from .settings import parse_replica_settings

__all__ = [
    "COOKIE",
    "ReplicaRouter",
    "Replicas",
    "add_db_replicas",
    "get_replicas",
    "includeme",
    "pinned",
    "use_primary",
]


def includeme(config):
    """Add ``config.add_db_replicas``, and call it with the
    ``dbrouter.replica.*`` settings if there are any."""
    config.add_directive("add_db_replicas", add_db_replicas)
    options = parse_replica_settings(config.get_settings())
    if options is not None:
        config.add_db_replicas(**options, _settings=True)
