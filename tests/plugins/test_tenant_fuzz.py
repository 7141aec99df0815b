"""Property-based fuzzing of tenant keys (hypothesis): traversal, absolute
paths, ``a/../b``, NUL, ``?``/``#``, percent-encoding, Unicode look-alikes,
over-long keys.  However hostile the key: no path outside the root, no file
created anywhere (the file system is checked), and no request answered with
another tenant's rows."""

import os
from urllib.parse import quote

import pytest
import webtest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tenant_app import make_app

from dbrouter_tenant import InvalidTenantKey, check_key, create_tenant, get_tenancy

pytest_plugins = ("tenant_support",)

HOSTILE_PIECES = [
    "..",
    ".",
    "/",
    "\\",
    "\x00",
    "?",
    "#",
    "%2e",
    "%2f",
    "%00",
    "~",
    ":",
    "\n",
    "/etc/passwd",
    "C:\\",
    "a/../b",
    "\u0430",  # Cyrillic a
    "\u2024",  # one-dot leader, looks like '.'
    "\uff0e",  # full-width full stop
    "\u2215",  # division slash
    "\u0131",  # dotless i
    "\u212a",  # Kelvin sign, lower()s to 'k'
    "A",
    "a",
    "summer",
    "-",
    "_",
]
keys = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(HOSTILE_PIECES), max_size=8).map("".join),
    st.text(alphabet="abc./%\\\x00-_", max_size=20),
    st.integers(min_value=40, max_value=300).map(lambda n: "a" * n),
)

ALBUMS = {"summer": ["beach"], "winter": ["snow", "ice"]}


@pytest.fixture(scope="module")
def albums(tmp_path_factory):
    """One application over two albums, shared by the fuzzed examples."""
    tmp = tmp_path_factory.mktemp("fuzz")
    root = tmp / "albums"
    root.mkdir()
    (tmp / "secret").mkdir()
    (tmp / "secret" / "album.sqlite").write_bytes(b"")  # a target next door
    app = make_app(
        {
            "sqlalchemy.url": f"sqlite:///{tmp / 'shared.sqlite'}",
            "dbrouter.tenant.mode": "sqlite-folder",
            "dbrouter.tenant.root": str(root),
        }
    )
    testapp = webtest.TestApp(app)
    for album, titles in ALBUMS.items():
        create_tenant(app.registry, album)
        for title in titles:
            testapp.post(f"/albums/{album}/photos", {"title": title})
    before = sorted(os.walk(tmp))
    yield tmp, root, app.registry, testapp
    assert sorted(os.walk(tmp)) == before, "a fuzzed key created or removed a file"
    app.registry["dbrouter"].engines.dispose()


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=keys)
@example(key="0\n")
@example(key="../secret")
@example(key="summer/../winter")
def test_a_key_is_valid_and_under_the_root_or_refused(albums, key):
    _tmp, root, registry, _testapp = albums
    mode = get_tenancy(registry).mode
    try:
        path = mode.path(key)
    except InvalidTenantKey:
        with pytest.raises(InvalidTenantKey):
            check_key(key)  # the same verdict from the key check alone
        assert not mode.exists(key)
        return
    assert os.path.commonpath([str(root), path]) == str(root)
    assert path == os.path.join(str(root), key, "album.sqlite")
    assert key.isascii() and key == key.lower() and "." not in key


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=st.one_of(keys, st.sampled_from(list(ALBUMS))))
def test_a_request_is_answered_with_its_own_album_or_a_404(albums, key):
    _tmp, _root, _registry, testapp = albums
    # the key as a client would send it: percent-encoded into the path
    response = testapp.get(f"/albums/{quote(key, safe='')}/photos", expect_errors=True)
    if key in ALBUMS:
        assert response.status_int == 200
        assert response.json == {"album": key, "photos": ALBUMS[key]}
    else:
        assert response.status_int == 404, (key, response.status)
