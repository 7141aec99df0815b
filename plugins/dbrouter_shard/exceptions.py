"""The errors of dbrouter_shard."""

from pyramid_dbrouter import DBRouterError


class ShardKeyError(DBRouterError):
    """A sharded model's key is missing, or is not a key the strategy can
    place; or a statement would read every shard where that is refused
    (``dbrouter.shard.on_missing_key = error``).  Raised before any SQL."""


class TableSuffixError(ValueError):
    """A table-per-shard suffix that cannot be part of a table name.  Raised
    before the name reaches SQLAlchemy, let alone a database."""
