"""``dbrouter archive``: the batch job that moves old rows to the archive.

::

    dbrouter archive development.ini --model myapp.models:Order --older-than 90d
    dbrouter archive development.ini --model myapp.models:Order \\
        --where "status = 'closed'" --batch 500 --dry-run

Each batch is one transaction (:func:`~dbrouter_archive.archive_rows` in the
core's ``session_scope``): a batch that fails or is killed leaves its rows
where they were, or -- on engines without two-phase commit -- in both
engines, which a second run finishes.  Running the job again resumes it:
it selects what still matches.  The condition is checked again in each
DELETE's WHERE, so a row changed after it was read stays in hot.

With an archive per key (``dbrouter.archive.hot = tenant:*``) there is no
request to tell the hot engine: ``--hot tenant:alps`` names it (its archive
is ``archive:alps``); run the command once per key.
"""

import re
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy
from pyramid.path import DottedNameResolver
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from pyramid_dbrouter import get_state, session_scope
from pyramid_dbrouter.cli import EXIT_FAILED, EXIT_OK, CommandError, loaded_app

from .archive import get_archive
from .move import move_keys

_AGE = re.compile(r"(\d+)\s*([smhdw]?)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value):
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` (a bare number: days)."""
    match = _AGE.fullmatch(value.strip())
    if match is None:
        raise CommandError(
            f"--older-than {value!r}: use a number and a unit, s m h d or w (90d)"
        )
    number, unit = int(match.group(1)), match.group(2) or "d"
    return timedelta(**{_UNITS[unit]: number})


def register(add):
    """Add ``dbrouter archive`` (the ``pyramid_dbrouter.commands`` entry point)."""
    cmd = add(
        "archive",
        run,
        "Move rows of an archived model, and their children, from the hot "
        "engine to the archive, in batches (dbrouter_archive)",
        "One transaction per batch: two-phase commit where the engines support "
        "it, else an idempotent copy then delete. Resumable: run it again.",
    )
    cmd.add_argument(
        "--model", required=True, metavar="MODEL", help="package.module:Class"
    )
    which = cmd.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--where", metavar="SQL", help="the rows to move: an SQL condition on its table"
    )
    which.add_argument(
        "--older-than",
        metavar="AGE",
        help="the rows whose --age-column is older than AGE (90d, 12h, 2w)",
    )
    cmd.add_argument(
        "--age-column",
        default="created_at",
        metavar="ATTR",
        help="with --older-than, the date attribute (default created_at)",
    )
    cmd.add_argument(
        "--hot",
        metavar="ENGINE",
        help="the hot engine (required when dbrouter.archive.hot is PREFIX:*: "
        "tenant:alps); its archive is the engine of the same key",
    )
    cmd.add_argument(
        "--batch", type=int, default=1000, metavar="N", help="rows per batch (1000)"
    )
    cmd.add_argument(
        "--dry-run", action="store_true", help="count the rows to move; move none"
    )


def _model(dotted):
    try:
        model = DottedNameResolver().resolve(dotted)
    except (ImportError, ValueError, LookupError) as exc:
        raise CommandError(f"--model {dotted!r}: cannot import it ({exc})") from exc
    if not isinstance(model, type) or not sqlalchemy.inspect(model, raiseerr=False):
        raise CommandError(f"--model {dotted!r}: {model!r} is not a mapped class")
    return model


def _condition(args, model):
    if args.where is not None:
        return text(args.where), f"WHERE {args.where}"
    column = getattr(model, args.age_column, None)
    if column is None or not hasattr(column, "type"):
        raise CommandError(
            f"--age-column {args.age_column!r}: {model.__name__} has no such column; "
            "name its date attribute"
        )
    now = datetime.now(UTC)
    if not getattr(column.type, "timezone", False):
        now = now.replace(tzinfo=None)
    cutoff = now - parse_age(args.older_than)
    return column < cutoff, f"{args.age_column} < {cutoff.isoformat(' ')}"


def run(args, out):
    if args.batch < 1:
        raise CommandError(f"--batch {args.batch}: give a positive number of rows")
    model = _model(args.model)
    with loaded_app(args.config_uri) as (registry, _state):
        try:
            archive = get_archive(registry)
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        if not archive.covers(model):
            raise CommandError(f"--model {args.model}: it is not an archived model")
        pair = _engines(registry, archive, args.hot)
        condition, said = _condition(args, model)
        try:
            if args.dry_run:
                return _dry_run(registry, pair, model, condition, said, args, out)
            return _move(registry, pair, model, condition, said, args, out)
        except SQLAlchemyError as exc:
            message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise CommandError(
                f"archive failed: {message[0] if message else type(exc).__name__}",
                EXIT_FAILED,
            ) from exc


def _engines(registry, archive, hot):
    """``(hot, archive)``: the engines of the move, checked to exist."""
    if hot is None:
        if archive.per_key:
            raise CommandError(
                f"--hot is required: dbrouter.archive.hot is {archive.hot}, one "
                f"hot engine per key; name one ({archive.hot_prefix}:KEY)"
            )
        hot = archive.hot
    if not archive.is_hot(hot):
        raise CommandError(
            f"--hot {hot!r}: not a hot engine of this archive "
            f"(dbrouter.archive.hot = {archive.hot})"
        )
    pair = (hot, archive.archive_of(hot))
    engines = get_state(registry).engines
    for name in pair:
        try:
            engines.get(name)
        except Exception as exc:  # the factory's: an unknown or invalid key
            raise CommandError(f"--hot {hot!r}: engine {name!r}: {exc}") from exc
    return pair


def _dry_run(registry, pair, model, condition, said, args, out):
    with session_scope(registry) as session:
        count = session.using_bind(pair[0]).scalar(
            select(func.count()).select_from(model).where(condition)
        )
    batches = -(-count // args.batch)
    print(
        f"dry run: {count} rows of {model.__name__} ({said}) would move from "
        f"{pair[0]} to {pair[1]}, in {batches} batches of {args.batch}",
        file=out,
    )
    return EXIT_OK


def _move(registry, pair, model, condition, said, args, out):
    hot = pair[0]
    pk = list(sqlalchemy.inspect(model).primary_key)
    print(
        f"moving {model.__name__} ({said}) from {hot} to {pair[1]}, "
        f"{args.batch} rows a batch",
        file=out,
        flush=True,
    )
    started = time.perf_counter()
    total = children = kept = batches = 0
    after = None  # keyset: a batch never selects a key it already saw
    while True:
        with session_scope(registry) as session:
            statement = select(*pk).where(condition).order_by(*pk).limit(args.batch)
            if after is not None and len(pk) == 1:
                statement = statement.where(pk[0] > after[0])
            keys = [tuple(k) for k in session.using_bind(hot).execute(statement)]
            if not keys:
                break
            moved = move_keys(session, model, keys, only_if=condition, hot=hot)
        after = keys[-1]
        batches += 1
        total, children, kept = (
            total + moved.rows,
            children + moved.children,
            kept + moved.kept,
        )
        elapsed = time.perf_counter() - started
        print(
            f"batch {batches}: {moved.rows} rows moved (+{moved.children} children"
            + (f", {moved.kept} kept: changed since read" if moved.kept else "")
            + f"); {total} rows in {elapsed:.1f} s, "
            f"{(total + children) / elapsed if elapsed else 0:.0f} rows/s",
            file=out,
            flush=True,
        )
    elapsed = time.perf_counter() - started
    print(
        f"done: {total} rows of {model.__name__} and {children} children moved in "
        f"{batches} batches, {elapsed:.1f} s"
        + (f"; {kept} rows kept in {hot} (changed since read)" if kept else ""),
        file=out,
    )
    return EXIT_OK
