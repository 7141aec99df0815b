"""The ``dbrouter`` command: what an application's engines and routers are,
where a model's rows go, and creating its tables.

::

    dbrouter show development.ini
    dbrouter show development.ini --explain myapp.models:Photo
    dbrouter init-db development.ini
    dbrouter init-db development.ini --all-tenants --jobs 8 --continue-on-error

Plugins add commands of their own (``dbrouter archive``) through the entry
point group ``pyramid_dbrouter.commands``: each entry names a callable
``register(add)``, called with the function that adds the core's commands,
``add(name, run, summary, details)`` -> an argparse subparser that already
takes CONFIG_URI; *run* is called with ``(args, out)`` and returns the exit
status, and may use :func:`loaded_app` and raise :class:`CommandError`.

The application is loaded from its ini file as ``pserve`` loads it.  ``show``
never connects to a database, so it answers with every database down;
``init-db`` connects only to the engines it has tables for.  Passwords are
masked everywhere, error messages included.
"""

import argparse
import itertools
import sys
from contextlib import contextmanager
from importlib.metadata import entry_points

import sqlalchemy
from pyramid.path import DottedNameResolver
from sqlalchemy.exc import SQLAlchemyError

from .config import get_state
from .exceptions import DBRouterError
from .masking import mask_text, mask_url
from .migrate import allowed_tables, init_db
from .recovery import recover
from .routing import BIND_KEY, DEFAULT_RULE, ROUTER, TABLE_BIND_KEY, migration, route

EXIT_OK = 0
#: a database refused or failed what was asked of it
EXIT_FAILED = 1
#: bad arguments, or an ini file, application or router that does not work
EXIT_USAGE = 2

ABSTAINED = "default: every router abstained"
PRECEDENCE = "  (using_bind() overrides both; a loaded object stays with its engine)"
#: the entry point group of the commands plugins add (see the docstring)
COMMANDS = "pyramid_dbrouter.commands"
TWOPHASE = {
    "auto": "auto (two-phase commit when two or more engines wrote)",
    "off": "off (a transaction where two engines wrote is refused)",
}


class CommandError(Exception):
    """What went wrong, as one line for stderr, and the exit status."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


def _load_error(config_uri, exc):
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read {config_uri!r}: {exc.strerror}"
    # errors raised inside config actions come wrapped, with no useful location
    exc = getattr(exc, "evalue", None) or exc
    if not isinstance(exc, LookupError | ValueError):  # their messages say enough
        exc = f"{type(exc).__name__}: {exc}"
    return f"cannot load the application from {config_uri!r}: {exc}"


@contextmanager
def loaded_app(config_uri):
    """Load the application of *config_uri*; yield its registry and dbrouter
    state; then dispose of the engines' pools and close the environment."""
    from pyramid.paster import bootstrap, setup_logging

    try:
        setup_logging(config_uri)
        env = bootstrap(config_uri)
    except Exception as exc:
        raise CommandError(_load_error(config_uri, exc)) from exc
    try:
        if env["registry"].get("dbrouter") is None:
            raise CommandError(
                f"the application of {config_uri!r} does not use pyramid_dbrouter; "
                'its main() should call config.include("pyramid_dbrouter")'
            )
        state = get_state(env["registry"])
        try:
            yield env["registry"], state
        finally:
            state.engines.dispose()
    finally:
        env["closer"]()


def _columns(rows, indent="  "):
    """*rows* of strings as lines, in columns."""
    widths = [max(map(len, column)) + 2 for column in zip(*rows, strict=True)]
    return [
        indent + "".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# -- show -----------------------------------------------------------------------


def _dotted(obj):
    """The dotted name of a class or function, or of an instance's class."""
    if not hasattr(obj, "__qualname__"):
        obj = type(obj)
    return f"{obj.__module__}.{obj.__qualname__}"


def router_names(registry, state):
    """``[(router, name)]`` in the order routers are asked: the name given to
    ``add_db_router``, by default the router's class dotted name."""
    given = {
        id(entry["introspectable"]["router"]): entry["introspectable"].title
        for entry in registry.introspector.get_category("dbrouter routers", ())
    }
    return [(r, given.get(id(r), _dotted(r))) for r in state.chain.routers]


def _replica_note(name, replica_of):
    """``replica of P`` for a replica, ``primary of R1, R2`` for its primary."""
    if name in replica_of:
        return f"replica of {replica_of[name]}"
    mine = sorted(r for r, p in replica_of.items() if p == name)
    return f"primary of {', '.join(mine)}" if mine else ""


def describe_config(registry, state):
    """Lines: the engines, engine factories, routers and transaction settings."""
    engines = state.engines
    lines = ["engines:"]
    replica_of = engines.replicas
    lines += _columns(
        [
            (n, e.dialect.name, mask_url(e.url), _replica_note(n, replica_of))
            for n, e in engines.static_items()
        ]
    )
    if engines.factories:
        lines.append("engines made on demand (engine factories):")
        lines += _columns(
            [(f"{p}:KEY", _dotted(f)) for p, f in sorted(engines.factories.items())]
        )
    routers = router_names(registry, state)
    if routers:
        lines.append("routers, asked in this order:")
        lines += [f"  {i}. {name}" for i, (_r, name) in enumerate(routers, 1)]
    else:
        lines.append("routers: none (models go to their __bind_key__, or to default)")
    parsed = state.settings
    lines.append("transactions:")
    rows = [("twophase", TWOPHASE.get(parsed.twophase, parsed.twophase))]
    rows += [("coordinator", parsed.coordinator), ("xid prefix", parsed.xid_prefix)]
    lines += _columns(rows)
    lines.append(f"init-db metadata: {parsed.metadata or 'none (dbrouter.metadata)'}")
    return lines


def resolve_model(dotted, state):
    """The mapped class named *dotted*, ``pkg.module:Class`` or ``pkg.module.Class``."""
    resolver = DottedNameResolver()
    try:
        model = resolver.resolve(dotted)
    except (ImportError, ValueError, LookupError) as exc:
        raise CommandError(
            f"--explain {dotted!r}: cannot import it ({exc}); name a mapped class "
            "as package.module:Class or package.module.Class"
        ) from exc
    if isinstance(model, type) and sqlalchemy.inspect(model, raiseerr=False):
        return model
    known = ""
    base = resolver.maybe_resolve(state.settings.metadata or None)
    if hasattr(base, "registry"):
        names = sorted(_dotted(m.class_) for m in base.registry.mappers)
        known = "; the mapped classes of dbrouter.metadata are " + ", ".join(names)
    raise CommandError(f"--explain {dotted!r}: {model!r} is not a mapped class{known}")


def _rule(routed, names):
    """How ``--explain`` prints a Route's rule: routers by their given names."""
    if routed.rule == ROUTER:
        return f"router {names.get(id(routed.subject), _dotted(routed.subject))}"
    if routed.rule == DEFAULT_RULE:
        return ABSTAINED
    return routed.reason


def _asking(ask):
    """``(answer, rule)`` of *ask*, or a router's error as the rule."""
    try:
        return ask()
    except Exception as exc:
        return None, f"a router raised {type(exc).__name__}: {mask_text(exc)}"


def _where(answer, state, write=False):
    if answer is None:
        return "?"
    names = answer if isinstance(answer, list) else [answer]
    known = {*state.engines.names(), *state.engines.factories}
    unknown = [n for n in names if n not in known and n.split(":")[0] not in known]
    shown = answer
    if isinstance(answer, list):
        # a write list: the statement runs on each, in one transaction
        shown = (
            f"each of {', '.join(names)}" if write else f"fan-out to {', '.join(names)}"
        )
    return shown + (f" (!! not configured: {', '.join(unknown)})" if unknown else "")


def explain(model, routers, state):
    """Lines: where *model*'s reads and writes go, on which engines init-db
    creates its table, and which rule decided each -- the session's own
    decision (:mod:`pyramid_dbrouter.routing`)."""
    table = sqlalchemy.inspect(model).local_table
    names = {id(router): name for router, name in routers}
    chain = state.chain
    rows = []
    # "bulk writes": an UPDATE without a WHERE, which a router may send to
    # several engines; shown only where it differs from the other writes
    asked = (("reads", False, None), ("writes", True, None))
    asked += (("bulk writes", True, sqlalchemy.update(model)),)
    for verb, write, clause in asked:

        def ask(write=write, clause=clause):
            routed = route(chain, model, write, clause=clause)
            return routed.name, _rule(routed, names)

        answer, rule = _asking(ask)
        row = (verb, _where(answer, state, write), f"<- {rule}")
        if clause is None or row[1:] != rows[-1][1:]:
            rows.append(row)
    lines = [f"{_dotted(model)} (table {table.name}):", *_columns(rows), PRECEDENCE]
    lines.append("  its table, on each engine (allow_migrate, as init-db decides):")
    rows = []
    for name in state.engines.names():

        def ask(name=name):
            allowed, routed = migration(chain, name, model, table)
            rule = _rule(routed, names)
            if routed.rule in (BIND_KEY, TABLE_BIND_KEY):
                rule += f" = {routed.name}"
            return allowed, rule

        allowed, rule = _asking(ask)
        rows.append((name, {True: "yes", False: "no"}.get(allowed, "?"), f"<- {rule}"))
    return lines + _columns(rows, indent="    ")


def show(args, out):
    with loaded_app(args.config_uri) as (registry, state):
        model = resolve_model(args.explain, state) if args.explain else None
        lines = describe_config(registry, state)
        if model is not None:
            lines += ["", *explain(model, router_names(registry, state), state)]
    print("\n".join(lines), file=out)
    return EXIT_OK


# -- init-db ----------------------------------------------------------------------


def _db_error(exc):
    """The first line of the driver's own message, without SQLAlchemy's wrapping."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _existing(state):
    """``{engine: {names of its tables that exist}}``, asking only the engines
    init-db will touch: the others may be down, or not ours to connect to."""
    there = {}
    for name, engine in state.engines.static_items():
        tables = allowed_tables(state.chain, name, state.metadata)
        try:
            there[name] = _tables_there(engine, tables)
        except SQLAlchemyError as exc:
            message = f"engine {name} ({mask_url(engine.url)}): {_db_error(exc)}"
            raise CommandError(message, EXIT_FAILED) from exc
    return there


def _tables_there(engine, tables):
    """The names of *tables* that exist on *engine*, each looked up in the
    schema the engine's ``schema_translate_map`` gives it (the inspector
    does not apply the map: a tenant's schema, or an attached album)."""
    if not tables:
        return set()
    with engine.connect() as conn:
        inspector = sqlalchemy.inspect(conn)
        return {
            t.name
            for t in tables
            if inspector.has_table(t.name, conn.schema_for_object(t))
        }


def _created(tables, there):
    created = [t for t in tables if t not in there]
    old = [t for t in tables if t in there]
    said = [f"created {', '.join(created)}"] if created else []
    said += [f"already there: {', '.join(old)}"] if old else []
    return "; ".join(said) or "no tables (allow_migrate allows none)"


def init_db_command(args, out):
    with loaded_app(args.config_uri) as (registry, state):
        if state.metadata is None:
            raise CommandError(
                f"{args.config_uri!r} has no dbrouter.metadata setting: init-db needs "
                "the dotted name of the MetaData or declarative base whose tables it "
                "creates, e.g. dbrouter.metadata = myapp.models:Base"
            )
        try:
            there = _existing(state)
            allowed = init_db(registry)
        except DBRouterError as exc:  # a router's allow_migrate answered nonsense
            raise CommandError(str(exc)) from exc
        except SQLAlchemyError as exc:
            raise CommandError(
                f"init-db failed: {_db_error(exc)}", EXIT_FAILED
            ) from exc
        rows = [(name, _created(t, there[name])) for name, t in allowed.items()]
        print("\n".join(_columns(rows, indent="")), file=out)
        if args.all_tenants:
            return _init_listed(state, args, out)
    return EXIT_OK


def _listed_names(state):
    """``PREFIX:KEY`` of every engine a factory can list (``keys(settings)``)."""
    listers = {
        prefix: factory
        for prefix, factory in state.engines.factories.items()
        if callable(getattr(factory, "keys", None))
    }
    if not listers:
        raise CommandError(
            "--all-tenants: no engine factory of this application can list its "
            "engines (a factory with keys(settings), such as dbrouter_tenant's)"
        )
    return [
        f"{prefix}:{key}"
        for prefix, factory in sorted(listers.items())
        for key in factory.keys(state.engines.settings)
    ]


def _init_one(state, name):
    """Create one listed engine's tables; return its status line."""
    try:
        engine = state.engines.get(name)
        tables = allowed_tables(state.chain, name, state.metadata)
        there = _tables_there(engine, tables)
        state.metadata.create_all(engine, tables=tables)
        return True, _created([t.name for t in tables], there)
    except Exception as exc:  # reported per engine; the others go on
        return False, f"FAILED: {type(exc).__name__}: {mask_text(_db_error(exc))}"
    finally:
        # one pass over thousands of engines: close each as soon as it is done
        state.engines.discard(name)


def _init_listed(state, args, out):
    """``init-db --all-tenants``: every listed engine, *args.jobs* at a time,
    a status line each as it finishes; exit status 1 if any failed."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    names = _listed_names(state)
    queue = iter(names)
    failed, done = [], 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # at most N submitted at a time, so that after a failure (without
        # --continue-on-error) no new engine is started
        pending = {}
        for name in itertools.islice(queue, args.jobs):
            pending[pool.submit(_init_one, state, name)] = name
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                name = pending.pop(future)
                ok, said = future.result()
                done += 1
                print(f"{name}  {said}", file=out, flush=True)
                if not ok:
                    failed.append(name)
            if failed and not args.continue_on_error:
                continue  # let those running finish; start none
            for name in itertools.islice(queue, len(finished)):
                pending[pool.submit(_init_one, state, name)] = name
    skipped = len(names) - done
    summary = f"all tenants: {done - len(failed)} of {len(names)} done"
    summary += f", {len(failed)} failed ({', '.join(failed)})" if failed else ""
    summary += f", {skipped} not attempted (no --continue-on-error)" if skipped else ""
    print(summary, file=out)
    return EXIT_FAILED if failed else EXIT_OK


# -- recover ----------------------------------------------------------------------


def recover_command(args, out):
    with loaded_app(args.config_uri) as (registry, _state):
        try:
            report = recover(registry, dry_run=args.dry_run, older_than=args.older_than)
        except SQLAlchemyError as exc:
            raise CommandError(
                f"recover failed: {_db_error(exc)}", EXIT_FAILED
            ) from exc
    lines = report.lines() or ["no prepared branch of this application"]
    print("\n".join(mask_text(line) for line in lines), file=out)
    if report.dry_run:
        return EXIT_OK
    return EXIT_OK if report.ok else EXIT_FAILED


# -- the command line -------------------------------------------------------------


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def make_parser():
    parser = argparse.ArgumentParser(
        prog="dbrouter",
        description="Inspect and set up the databases of a Pyramid application "
        "that uses pyramid_dbrouter.",
        epilog="Exit status: 0 on success, 1 when a database failed, 2 for bad "
        "arguments or an application that cannot be loaded.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def add(name, run, summary, details):
        cmd = commands.add_parser(
            name, help=summary, description=f"{summary}. {details}"
        )
        cmd.add_argument(
            "config_uri", metavar="CONFIG_URI", help="an ini file (FILE[#APP])"
        )
        cmd.set_defaults(run=run, command=name)
        return cmd

    show_cmd = add(
        "show",
        show,
        "List the engines (passwords masked), engine factories, routers and "
        "transaction settings",
        "Routers are listed in the order they are asked. Never connects to a database.",
    )
    show_cmd.add_argument(
        "--explain",
        metavar="MODEL",
        help="also say where reads and writes of MODEL go, on which engines "
        "init-db creates its table, and which rule decided; MODEL is a mapped "
        "class, as package.module:Class or package.module.Class",
    )
    init_cmd = add(
        "init-db",
        init_db_command,
        "Create the tables of dbrouter.metadata where allow_migrate allows",
        "Each engine is given the tables the routers allow there; tables that "
        "exist are left alone.",
    )
    init_cmd.add_argument(
        "--all-tenants",
        action="store_true",
        help="also every engine an engine factory can list (every tenant of "
        "dbrouter_tenant), one status line each; exit status 1 if any failed",
    )
    init_cmd.add_argument(
        "--jobs",
        type=_positive,
        default=1,
        metavar="N",
        help="with --all-tenants, migrate N engines at a time (default 1)",
    )
    init_cmd.add_argument(
        "--continue-on-error",
        action="store_true",
        help="with --all-tenants, go on after an engine failed (default: stop "
        "starting new ones)",
    )
    recover_cmd = add(
        "recover",
        recover_command,
        "Finish the two-phase transactions a crash left prepared",
        "Branches decided COMMIT are committed, the others rolled back (presumed "
        "abort). Exit status 0 when none of this application's branches remain.",
    )
    recover_cmd.add_argument(
        "--dry-run",
        action="store_true",
        help="report what would be done; change nothing",
    )
    recover_cmd.add_argument(
        "--older-than",
        type=float,
        default=0,
        metavar="SECONDS",
        help="leave alone branches prepared less than SECONDS ago (default 0)",
    )
    for entry in sorted(entry_points(group=COMMANDS), key=lambda e: e.name):
        try:
            register = entry.load()
        except Exception as exc:  # one broken plugin does not take the rest down
            print(
                f"dbrouter: command {entry.name!r} ({entry.value}) not loaded: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            continue
        register(add)
    return parser


def main(argv=None):
    """Run ``dbrouter`` with *argv* (by default ``sys.argv[1:]``); return
    the exit status."""
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as exc:  # after --help, or a usage error argparse printed
        return exc.code
    try:
        return args.run(args, sys.stdout)
    except CommandError as exc:
        print(f"dbrouter {args.command}: error: {mask_text(exc)}", file=sys.stderr)
        return exc.code
