"""Where the time goes: pyinstrument profiles of the slow paths.

Targets (each profiled for the same number of operations as its anchor, so
that the two profiles can be subtracted):

* ``request``: ``GET /items`` through WebTest on the pyramid_dbrouter
  application with 2 engines, and on the cookiecutter-starter application
  (``full_request.py``, SQLite files);
* ``fanout``: the fan-out read over 4 SQLite files, and the same statement
  run by hand on each file in turn (``fanout_read.py``);
* ``tenant miss``: ``using_bind("tenant:KEY").get()`` round-robin over more
  keys than the LRU of dynamic engines keeps, so that every request makes an
  engine (``scale.py``).

For each profile: the time per operation, the functions with the most *self*
time, the time spent inside pyramid_dbrouter's own functions (inclusive),
and, against the anchor, the functions whose self time grew the most per
operation.  The full trees are written as HTML and text next to the
JSON (``benchmarks/out/profile-*.html``).  Run:
``.venv/bin/python benchmarks/profiling.py [--quick]``.
"""

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler
from sqlalchemy.orm import sessionmaker

import _bench
import fanout_read
import full_request
import scale
from pyramid_dbrouter import EngineRegistry, get_session_factory
from pyramid_dbrouter.settings import DEFAULT

INTERVAL = 0.0001  # seconds between samples


def _label(frame):
    path = frame.file_path or ""
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = Path(path).name
    return f"{frame.function} ({path}:{frame.line_no})"


def _package(frame):
    path = frame.file_path or ""
    if "pyramid_dbrouter" in path:
        return "pyramid_dbrouter"
    for name in (
        "sqlalchemy",
        "pyramid_tm",
        "pyramid_retry",
        "pyramid",
        "zope",
        "transaction",
        "webtest",
        "webob",
        "psycopg",
        "concurrent",
        "threading",
        "sqlite3",
    ):
        if f"/{name}/" in path or path.endswith(f"/{name}.py"):
            return name
    if "benchmarks" in path:
        return "benchmark code"
    return "other (stdlib, builtins)"


def aggregate(root):
    """Self and inclusive (recursion counted once) seconds per function,
    and self seconds per package."""
    own, inclusive, packages = {}, {}, {}

    def walk(frame, on_stack):
        children = [c for c in frame.children if not c.is_synthetic]
        self_time = frame.time - sum(c.time for c in children)
        key = _label(frame)
        own[key] = own.get(key, 0.0) + self_time
        package = _package(frame)
        packages[package] = packages.get(package, 0.0) + self_time
        if key not in on_stack:
            inclusive[key] = inclusive.get(key, 0.0) + frame.time
        on_stack = on_stack | {key}
        for child in children:
            walk(child, on_stack)

    walk(root, frozenset())
    return own, inclusive, packages


def profile_pair(subject, anchor, n, out_dir, chunks=10):
    """Profile ``run(n)`` of *subject* and of *anchor*, each ``(name, run)``,
    in interleaved chunks (so that load from other processes hits both
    alike); the aggregated figures of each, per operation."""
    profilers = [Profiler(interval=INTERVAL) for _ in (subject, anchor)]
    walls = [0.0, 0.0]
    for _name, run in (subject, anchor):
        run(max(1, n // 10))  # warm caches
    # as when timing (_bench.interleave): the setup's objects are never
    # scanned again, so that garbage collections cost what they cost a
    # long-running application rather than what they cost this script
    gc.collect()
    gc.freeze()
    try:
        per_chunk = max(1, n // chunks)
        for _ in range(chunks):
            for i, (_name, run) in enumerate((subject, anchor)):
                began = time.perf_counter()
                profilers[i].start()
                run(per_chunk)
                profilers[i].stop()
                walls[i] += time.perf_counter() - began
    finally:
        gc.unfreeze()
    n = per_chunk * chunks
    return tuple(
        _summary(name, profiler, wall, n, out_dir)
        for (name, _run), profiler, wall in zip(
            (subject, anchor), profilers, walls, strict=True
        )
    )


def _summary(name, profiler, wall, n, out_dir):
    session = profiler.last_session
    if out_dir is not None:
        slug = name.replace(" ", "-").replace(",", "")
        (out_dir / f"profile-{slug}.html").write_text(profiler.output_html())
        (out_dir / f"profile-{slug}.txt").write_text(profiler.output_text())
    root = session.root_frame()
    own, inclusive, packages = aggregate(root)
    return {
        "name": name,
        "n": n,
        "wall_s": wall,
        "sampled_s": root.time if root is not None else 0.0,
        "samples": session.sample_count,
        "us_per_op": wall / n * 1e6,
        "self_us": {k: v / n * 1e6 for k, v in own.items()},
        "inclusive_us": {k: v / n * 1e6 for k, v in inclusive.items()},
        "package_self_us": {k: v / n * 1e6 for k, v in packages.items()},
    }


def top(mapping, k, where=None):
    items = [(key, v) for key, v in mapping.items() if where is None or where(key)]
    return sorted(items, key=lambda kv: kv[1], reverse=True)[:k]


def compare(subject, anchor, k=12):
    """Functions whose self time per operation grew most over *anchor*."""
    ours, theirs = subject["self_us"], anchor["self_us"]
    keys = set(ours) | set(theirs)
    grown = {key: ours.get(key, 0.0) - theirs.get(key, 0.0) for key in keys}
    return top(grown, k)


def _ours(key):
    return "pyramid_dbrouter/" in key


# -- targets ---------------------------------------------------------------------------


def request_target(n, out_dir, tmp):
    names = iter(range(1 << 20))

    def new_url():
        return f"sqlite:///{tmp}/profile{next(names)}.sqlite"

    contenders = full_request.make_contenders(new_url)
    try:
        starter, dbrouter = contenders[0], contenders[1]
        return profile_pair(
            ("request, pyramid_dbrouter 2 engines", dbrouter.get),
            ("request, starter", starter.get),
            n,
            out_dir,
        )
    finally:
        for c in contenders:
            for engine in c.engines:
                engine.dispose()


def fanout_target(n, out_dir, tmp):
    new_url = fanout_read.url_maker(None, tmp)
    shards = fanout_read.Shards(4, new_url)
    try:
        shards.check()
        return profile_pair(
            ("fan-out, 4 SQLite files", shards.fanout),
            ("by hand, 4 SQLite files", shards.by_hand),
            n,
            out_dir,
        )
    finally:
        shards.close()


def tenant_target(n, out_dir, tmp):
    tenants = scale.Tenants(tmp, 200)
    registry = EngineRegistry(max_dynamic_engines=32)
    template = f"sqlite:///{tmp}/template.sqlite"
    from sqlalchemy import create_engine

    registry.add(DEFAULT, create_engine(template))
    registry.add_factory("tenant", tenants.factory)
    run = scale._tenant_run(
        get_session_factory(registry), [f"tenant:{k}" for k in tenants.keys]
    )
    plain_engine = create_engine(template)
    try:
        return profile_pair(
            ("tenant miss, LRU 32 of 200", run),
            (
                "plain Session get, 1 static engine",
                scale._plain_run(sessionmaker(bind=plain_engine)),
            ),
            n,
            out_dir,
        )
    finally:
        registry.dispose()
        plain_engine.dispose()


TARGETS = {
    "request": (request_target, 3000, 400),
    "fanout": (fanout_target, 3000, 400),
    "tenant miss": (tenant_target, 1500, 200),
}


def run(quick=False, out_dir=None):
    results = {}
    for name, (target, n_full, n_quick) in TARGETS.items():
        _bench.log(f"  profile {name}\n")
        with tempfile.TemporaryDirectory(prefix="dbrouter-bench-profile-") as tmp:
            subject, anchor = target(n_quick if quick else n_full, out_dir, tmp)
        results[name] = {
            "subject": subject,
            "anchor": anchor,
            "top_self": top(subject["self_us"], 12),
            "top_ours": top(subject["inclusive_us"], 12, _ours),
            "grown": compare(subject, anchor),
            "packages": top(subject["package_self_us"], 12),
            "anchor_packages": anchor["package_self_us"],
        }
    return results


def format_section(name, data):
    subject, anchor = data["subject"], data["anchor"]
    lines = [
        f"**{subject['name']}**: {subject['us_per_op']:.0f} µs/op under the "
        f"profiler ({anchor['name']}: {anchor['us_per_op']:.0f} µs/op), "
        f"{subject['samples']} samples.",
        "",
        "| self time by package | µs/op | anchor µs/op |",
        "| --- | ---: | ---: |",
    ]
    for package, us in data["packages"]:
        lines.append(
            f"| {package} | {us:.1f} | {data['anchor_packages'].get(package, 0):.1f} |"
        )
    lines += ["", "| top self time | µs/op |", "| --- | ---: |"]
    lines += [f"| `{key}` | {us:.1f} |" for key, us in data["top_self"][:8]]
    lines += [
        "",
        f"| self time grown most against {anchor['name']} | µs/op |",
        "| --- | ---: |",
    ]
    lines += [f"| `{key}` | {us:+.1f} |" for key, us in data["grown"][:10]]
    lines += ["", "| pyramid_dbrouter functions (inclusive) | µs/op |"]
    lines += ["| --- | ---: |"]
    lines += [f"| `{key}` | {us:.1f} |" for key, us in data["top_ours"][:10]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    out_dir = _bench.HERE / "out"
    out_dir.mkdir(exist_ok=True)
    results = run(quick=args.quick, out_dir=out_dir)
    for name, data in results.items():
        print(f"## {name}\n\n{format_section(name, data)}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
