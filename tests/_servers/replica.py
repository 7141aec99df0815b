"""A streaming hot standby of a PostgresCluster."""

from __future__ import annotations

import time

from .postgres import PostgresCluster


def start_replica(
    primary: PostgresCluster, name: str = "replica", timeout: float = 30
) -> PostgresCluster:
    """A hot standby streaming from ``primary``, started and caught up.

    pg_basebackup -R writes standby.signal and primary_conninfo; the primary's
    settings are reused because a standby needs max_prepared_transactions and
    max_connections at least as high as its primary's.
    """
    replica = PostgresCluster(
        name, settings=primary.settings, bindir=primary.bindir, os_user=primary.os_user
    )
    replica.role = "replica"
    replica.primary = primary
    try:
        replica._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(replica.data_dir),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",  # the default spread checkpoint takes minutes
            "--no-sync",
        )
        # The base backup copied the primary's log file; start the replica's
        # own log empty so log_text() shows only what the replica did.
        replica.log_path.write_text("")
        replica.start()
        wait_replicated(primary, replica, timeout=timeout)
    except BaseException:
        replica.cleanup()
        raise
    return replica


def wait_replicated(
    primary: PostgresCluster, replica: PostgresCluster, timeout: float = 10
) -> str:
    """Wait until the replica has replayed everything committed on the primary.

    With synchronous_commit = off a commit may still sit in unflushed WAL, and a
    walsender only sends flushed WAL; so first a tiny synchronously committed
    write (a WAL message, no table needed) flushes all WAL before it, and its
    flush position is the target.  Returns that LSN.
    """
    with primary.connect() as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, 'dbrouter-tests', 'sync')")
        target = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with replica.connect() as conn:
        while True:
            replayed, caught_up = conn.execute(
                "SELECT pg_last_wal_replay_lsn(),"
                " pg_last_wal_replay_lsn() >= %s::pg_lsn",
                (str(target),),
            ).fetchone()
            if replayed is None:
                raise RuntimeError(f"{replica!r} is not a standby")
            if caught_up:
                return str(target)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{replica!r} replayed up to {replayed}, primary is at {target} "
                    f"after {timeout}s"
                )
            time.sleep(0.02)
