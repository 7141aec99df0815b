"""What every benchmark here shares: interleaved timing, summaries, the
machine, the load other processes put on it, and PostgreSQL clusters.

Method, everywhere: the contenders are *interleaved* -- each round times one
block of N operations per contender, the first contender rotating from round
to round -- so that a burst of load from another process hits them all
alike.  N is calibrated on the anchor (the first contender) so that a block
lasts about ``block_ms``.  Each block's wall time (``perf_counter_ns``) and
this process's CPU time (``process_time_ns``) are kept.  Summaries give, per
contender, the median per-operation time over rounds, its ratio to the
anchor's median, the median and interquartile range of the per-round paired
ratio (contender's block / anchor's block of the same round), and the ratio
of median CPU times.  Nothing here asserts on a time.
"""

import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"


def log(text):
    print(text, end="", file=sys.stderr, flush=True)


# -- timing -------------------------------------------------------------------------


def calibrate(run, block_ns, warm=3):
    """N such that ``run(N)`` lasts about *block_ns*."""
    run(warm)
    n = 1
    while True:
        start = time.perf_counter_ns()
        run(n)
        elapsed = time.perf_counter_ns() - start
        if elapsed >= block_ns / 4 or n >= 1 << 20:
            break
        n *= 2
    return max(1, round(n * block_ns / max(elapsed, 1)))


def interleave(runs, n, rounds, warm=True):
    """Time ``run(n)`` for each of *runs*, *rounds* times, interleaved.

    Returns ``(per_op, cpu_per_op)``: for each run, the list of per-operation
    wall and CPU times (ns), one per round.
    """
    if warm:
        for run in runs:  # untimed
            run(max(1, n // 2))
    gc.collect()
    gc.freeze()  # the setup's objects are never scanned again
    per_op = [[] for _ in runs]
    cpu_per_op = [[] for _ in runs]
    k = len(runs)
    try:
        for r in range(rounds):
            for j in range(k):
                i = (r + j) % k
                cpu_start = time.process_time_ns()
                start = time.perf_counter_ns()
                runs[i](n)
                per_op[i].append((time.perf_counter_ns() - start) / n)
                cpu_per_op[i].append((time.process_time_ns() - cpu_start) / n)
            log(".")
    finally:
        gc.unfreeze()
    return per_op, cpu_per_op


def quantile(values, q):
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(per_op, cpu_per_op, anchor=0):
    """One summary per contender, ratios against the contender *anchor*."""
    base = per_op[anchor]
    base_median = statistics.median(base)
    cpu_base = statistics.median(cpu_per_op[anchor])
    rows = []
    for times, cpu in zip(per_op, cpu_per_op, strict=True):
        paired = [t / b for t, b in zip(times, base, strict=True)]
        rows.append(
            {
                "median_ns": statistics.median(times),
                "ratio": statistics.median(times) / base_median,
                "paired_median": statistics.median(paired),
                "paired_p25": quantile(paired, 0.25),
                "paired_p75": quantile(paired, 0.75),
                "min_ns": min(times),
                "min_ratio": min(times) / min(base),
                "cpu_median_ns": statistics.median(cpu),
                "cpu_ratio": statistics.median(cpu) / cpu_base if cpu_base else None,
            }
        )
    return rows


def measure(names, runs, rounds, block_ms, anchor=0, n=None):
    """Calibrate on the anchor, interleave, summarize: a JSON-able dict."""
    if n is None:
        n = calibrate(runs[anchor], block_ms * 1e6)
    per_op, cpu_per_op = interleave(runs, n, rounds)
    return {
        "n": n,
        "rounds": rounds,
        "contenders": list(names),
        "per_op_ns": dict(zip(names, per_op, strict=True)),
        "cpu_per_op_ns": dict(zip(names, cpu_per_op, strict=True)),
        "summary": dict(zip(names, summarize(per_op, cpu_per_op, anchor), strict=True)),
    }


# -- the machine ----------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision():
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine():
    import sqlite3

    import sqlalchemy

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "psycopg": _version("psycopg"),
        "pyramid": _version("pyramid"),
        "zope.sqlalchemy": _version("zope.sqlalchemy"),
        "pyramid_dbrouter": _version("pyramid_dbrouter"),
        "git": git_revision(),
    }


class OtherLoad:
    """CPU time used by other processes while a benchmark ran (Linux only)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ticks = [int(x) for x in fields]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: busy = all but idle, iowait
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        own = os.times()
        # ours: this process, and the PostgreSQL servers it started (which
        # pg_ctl daemonized: they are not our children)
        mine = own.user + own.system + servers_cpu_seconds()
        return busy / os.sysconf("SC_CLK_TCK"), mine, time.time()

    def cpus(self):
        """Average number of CPUs other processes kept busy, or None."""
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        busy = end[0] - self.start[0]
        own = end[1] - self.start[1]
        return max(0.0, (busy - own) / (end[2] - self.start[2]))


# -- PostgreSQL -----------------------------------------------------------------------

#: cluster settings for benchmarks: durable as in production, no statement log
#: (the test harness logs every statement and turns fsync off)
PG_SETTINGS = {
    "fsync": True,
    "synchronous_commit": True,
    "full_page_writes": True,
    "log_statement": "none",
    "shared_buffers": "128MB",
}


def servers():
    """The test suite's server harness (tests/_servers.py)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import _servers

    return _servers


_clusters = []  # the clusters started here and still running
_retired_cpu = [0.0]  # CPU seconds of those already stopped


def start_postgres(name):
    """A started PostgreSQL cluster (tests/_servers.py), or raise
    ``ServerUnavailable`` saying why there is none."""
    cluster = servers().PostgresCluster(name, settings=PG_SETTINGS)
    try:
        cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
    _clusters.append(cluster)
    return cluster


def stop_postgres(cluster):
    if cluster in _clusters:
        _retired_cpu[0] += _cluster_cpu(cluster)
        _clusters.remove(cluster)
    cluster.cleanup()


def _cpu_fields(pid):
    """utime, stime, cutime, cstime of *pid*, in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return (0.0, 0.0, 0.0, 0.0)
    fields = raw.rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return tuple(int(x) / tick for x in fields[11:15])


def _cluster_cpu(cluster):
    """CPU seconds of a cluster: the postmaster, its backends that exited
    (in its cutime/cstime) and those still running."""
    pid = cluster.pid
    if pid is None:
        return 0.0
    total = sum(_cpu_fields(pid))
    for child in servers()._children(pid):
        total += sum(_cpu_fields(child)[:2])
    return total


def servers_cpu_seconds():
    return _retired_cpu[0] + sum(_cluster_cpu(c) for c in _clusters)


def postgres_version(cluster):
    try:
        return cluster.execute("SHOW server_version")[0][0]
    except Exception as exc:  # noqa: BLE001 - only a label
        return f"unknown ({exc})"
