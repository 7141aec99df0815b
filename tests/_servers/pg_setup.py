"""What a PostgreSQL cluster is made of: the server binaries, the settings
written into its postgresql.conf, its pg_hba.conf, and the initdb template
that every new cluster of the process is copied from."""

from __future__ import annotations

import glob
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .common import ServerUnavailable

if TYPE_CHECKING:
    from .postgres import PostgresCluster

PG_BIN_ENV = "DBROUTER_PG_BIN"


# Applied on top of initdb's postgresql.conf.  Durability is traded for speed
# (fsync, full_page_writes, synchronous_commit): the data is thrown away, and
# PREPARE TRANSACTION / COMMIT PREPARED flush WAL whatever synchronous_commit
# says, so prepared transactions still survive kill().  An ordinary COMMIT
# made in the last few hundred milliseconds before kill() may be lost; a test
# that needs it to survive should run ``SET synchronous_commit = on`` first.
DEFAULT_SETTINGS: dict[str, object] = {
    # two processes of 16 threads prepare at once (test_decision_table)
    "max_prepared_transactions": 64,
    "wal_level": "replica",
    "max_wal_senders": 5,
    # Lets a stopped replica catch up again instead of needing a new base
    # backup, which failure tests rely on.
    "wal_keep_size": "128MB",
    # A standby retries a lost primary every 5s by default; failure tests that
    # restart the primary would spend most of their time waiting for that.
    "wal_retrieve_retry_interval": "250ms",
    "fsync": False,
    "synchronous_commit": False,
    "full_page_writes": False,
    "shared_buffers": "32MB",
    "log_statement": "all",
    # User and database in each line, so that a test can pick out the
    # statements of its own database from a shared cluster's log.
    "log_line_prefix": "%m [%p] %q%u@%d ",
    # Without the collector, backends write their log lines themselves before
    # answering, so the log is complete as soon as a statement has returned.
    "logging_collector": False,
    "log_destination": "stderr",
    "lc_messages": "C",
    "timezone": "UTC",
    "log_timezone": "UTC",
}

PG_HBA = """\
# Written by tests/_servers: trust, and loopback only.
local   all           all                   trust
local   replication   all                   trust
host    all           all      127.0.0.1/32 trust
host    replication   all      127.0.0.1/32 trust
"""


def find_pg_bindir() -> Path:
    """The directory holding initdb, pg_ctl and pg_basebackup.

    $DBROUTER_PG_BIN wins; then the newest Debian-style
    /usr/lib/postgresql/<version>/bin; then whatever initdb is on PATH.
    """
    candidates = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True)
    candidates.extend(Path(p) for p in versioned)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return directory
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; "
        f"set {PG_BIN_ENV} to their directory"
    )


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


_templates: dict[tuple[Path, str], PostgresCluster] = {}


def _template_for(cluster: PostgresCluster) -> PostgresCluster:
    """A never started, freshly initdb'ed cluster to copy new clusters from.

    One per process (and per bindir and OS user), deleted with the clusters.
    The copies share initdb's system identifier, which only matters for
    replication, and a replica is a copy of its primary anyway.
    """
    key = (cluster.bindir, cluster.os_user)
    template = _templates.get(key)
    if template is None or not template.initialized:
        template = type(cluster)(
            "template", bindir=cluster.bindir, os_user=cluster.os_user
        )
        _templates[key] = template
        template._initdb()
    return template
