"""dbrouter_shard: rows spread over N databases by a key, for pyramid_dbrouter.

``config.include("dbrouter_shard")`` (after ``pyramid_dbrouter``) adds the
directive ``config.add_db_shards`` and calls it with the
``dbrouter.shard.*`` settings; ``request.shards`` is the application's
:class:`Shards`.  A model names its key, ``__shard_key__ = "user_id"``::

    class User(Base):
        __tablename__ = "users"
        __shard_key__ = "id"
        id = mapped_column(BigInteger, primary_key=True)

New objects go to their key's shard, reads that pin the key go to its
shards, other reads to every shard through the core's fan-out.

Sharding is worth its cost when one database cannot hold the rows or the
writes; before it, a bigger server, read replicas (dbrouter_replica) or a
database per tenant (dbrouter_tenant) are simpler: every query without the
key reads every shard, and a row cannot move without copying it.
"""

from .directive import add_db_shards, get_shards
from .exceptions import ShardKeyError, TableSuffixError
from .router import FOLLOW_PARENT, ShardRouter
from .settings import parse_shard_settings
from .shards import Shards
from .tables import TableModels

__all__ = [
    "FOLLOW_PARENT",
    "ShardKeyError",
    "ShardRouter",
    "Shards",
    "TableModels",
    "TableSuffixError",
    "add_db_shards",
    "get_shards",
    "includeme",
]


def _request_shards(request):
    return get_shards(request.registry)


def includeme(config):
    """Add ``config.add_db_shards``, call it with the ``dbrouter.shard.*``
    settings if they name shards, and add ``request.shards``."""
    config.add_directive("add_db_shards", add_db_shards)
    options = parse_shard_settings(config.get_settings())
    if options is not None:
        config.add_db_shards(**options, _settings=True)
    config.add_request_method(_request_shards, "shards", reify=True)
