"""Many tenants at once: 1,000 requests over 50 albums from 8 threads, and
10,000 albums touched with at most 64 engines open (file descriptors and
memory measured, and printed for the benchmark note)."""

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import webtest
from sqlalchemy import select
from tenant_app import Photo, make_app

from dbrouter_tenant import create_tenant, tenant_scope

pytest_plugins = ("tenant_support",)


def test_1000_requests_over_50_albums_from_8_threads_see_only_their_rows(
    folder_settings,
):
    # 50 albums and an LRU of 32 engines: engines are evicted while in use
    app = make_app({**folder_settings, "dbrouter.max_dynamic_engines": "32"})
    setup = webtest.TestApp(app)
    albums = [f"album-{n:02d}" for n in range(50)]
    for album in albums:
        create_tenant(app.registry, album)
        setup.post(f"/albums/{album}/photos", {"title": f"only in {album}"})
    wrong = []
    local = threading.local()

    def request(n):
        if not hasattr(local, "app"):
            local.app = webtest.TestApp(app)
        album = albums[n % len(albums)]
        got = local.app.get(f"/albums/{album}/photos").json
        if got != {"album": album, "photos": [f"only in {album}"]}:
            wrong.append((album, got))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(request, range(1000)))
    assert wrong == []
    app.registry["dbrouter"].engines.dispose()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_10000_albums_with_64_engines_keep_fds_and_memory_bounded(
    folder_settings, album_root
):
    app = make_app({**folder_settings, "dbrouter.max_dynamic_engines": "64"})
    registry = app.registry
    create_tenant(registry, "template")
    with tenant_scope(registry, "template") as dbsession:
        dbsession.add(Photo(title="one"))
    template = album_root / "template" / "album.sqlite"
    albums = [f"a{n:05d}" for n in range(10_000)]
    for album in albums:  # albums arrive as folders, copied in
        (album_root / album).mkdir()
        shutil.copyfile(template, album_root / album / "album.sqlite")

    fds_before, rss_before = open_fds(), rss_mb()
    fds_peak = fds_before
    for n, album in enumerate(albums):
        with tenant_scope(registry, album) as dbsession:
            assert dbsession.scalars(select(Photo.title)).all() == ["one"]
        if n % 250 == 0:
            fds_peak = max(fds_peak, open_fds())
    fds_peak = max(fds_peak, open_fds())
    rss_growth = rss_mb() - rss_before
    engines = registry["dbrouter"].engines
    print(
        f"\n10,000 albums, max_dynamic_engines=64: open engines "
        f"{len(engines.open_dynamic_names())}, fds {fds_before} -> peak {fds_peak}, "
        f"RSS growth {rss_growth:.1f} MB"
    )
    assert len(engines.open_dynamic_names()) == 64
    # one pooled connection (one file) per open engine, plus evicted engines
    # waiting for their dispose on the core's worker thread
    assert fds_peak - fds_before <= 64 + 32
    assert rss_growth < 100
    engines.dispose()
