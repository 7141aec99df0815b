"""Settings and the ``set_tenant_mode`` directive: every bad value is a
ConfigurationError at start-up naming the key, the value (password masked)
and what would be accepted; resolvers find the tenant in the matchdict, the
host or a header, or by a callable of the application's."""

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationError
from tenant_app import make_app

from dbrouter_tenant import create_tenant

pytest_plugins = ("tenant_support",)


def start(settings):
    return make_app({"sqlalchemy.url": "sqlite://", **settings})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {},
            "dbrouter.tenant.mode is required (sqlite-folder | database | schema), "
            "or a call of config.set_tenant_mode",
        ),
        (
            {"dbrouter.tenant.mode": "folders"},
            "dbrouter.tenant.mode: 'folders' must be one of sqlite-folder | database",
        ),
        (
            {"dbrouter.tenant.mode": "sqlite-folder", "dbrouter.tenant.root": "/nope"},
            "dbrouter.tenant.root: '/nope' is not an existing folder",
        ),
        (
            {"dbrouter.tenant.mode": "database"},
            "dbrouter.tenant.url is not set, and is required by the database mode",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.name_prefix": "T-"},
            "dbrouter.tenant.name_prefix: 'T-' must be 1 to 15 lower-case",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.root": "/tmp"},
            "dbrouter.tenant.root: '/tmp' does not apply to the schema mode",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.rooot": "/tmp"},
            "dbrouter.tenant.rooot: unknown setting; known: dbrouter.tenant.mode",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.resolver": "cookie"},
            "dbrouter.tenant.resolver: 'cookie' is not a resolver; use one of "
            "matchdict, subdomain, header, or the dotted name of a callable",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.resolver": "subdomain"},
            "dbrouter.tenant.domain is not set, and is required by the subdomain",
        ),
        (
            {
                "dbrouter.tenant.mode": "schema",
                "dbrouter.tenant.resolver": "header",
                "dbrouter.tenant.header": "X Tenant",
            },
            "dbrouter.tenant.header: 'X Tenant' is not an HTTP header name",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.header": "X-T"},
            "dbrouter.tenant.header: 'X-T' does not apply to the matchdict resolver",
        ),
        (
            {"dbrouter.tenant.mode": "schema", "dbrouter.tenant.metadata": "no.such:M"},
            "dbrouter.tenant.metadata: cannot import 'no.such:M'",
        ),
    ],
)
def test_a_bad_setting_names_the_key_the_value_and_the_alternatives(settings, message):
    with pytest.raises(ConfigurationError) as info:
        start(settings)
    assert message in str(info.value)


def test_a_bad_file_name_is_refused(album_root):
    with pytest.raises(ConfigurationError, match="is not a plain file name"):
        start(
            {
                "dbrouter.tenant.mode": "sqlite-folder",
                "dbrouter.tenant.root": str(album_root),
                "dbrouter.tenant.filename": "../album.sqlite",
            }
        )


@pytest.mark.parametrize(
    "url", ["oracle://scott:s3cr3t@db/orcl", "nosuch+driver://scott:s3cr3t@db/x"]
)
def test_the_url_is_shown_with_its_password_masked(url):
    with pytest.raises(ConfigurationError) as info:
        start({"dbrouter.tenant.mode": "database", "dbrouter.tenant.url": url})
    message = str(info.value)
    assert message.startswith("dbrouter.tenant.url: '")
    assert "scott:***@db" in message
    assert "s3cr3t" not in message


def test_the_directive_can_stand_for_the_settings(album_root):
    with Configurator(settings={"sqlalchemy.url": "sqlite://"}) as config:
        config.include("dbrouter_tenant")
        config.set_tenant_mode(
            "sqlite-folder", root=str(album_root), metadata="tenant_app:AlbumBase"
        )
    create_tenant(config.registry, "made")
    assert (album_root / "made" / "album.sqlite").is_file()


def test_set_tenant_mode_twice_is_a_conflict(album_root):
    config = Configurator(settings={"sqlalchemy.url": "sqlite://"})
    config.include("dbrouter_tenant")  # no dbrouter.tenant.* settings
    for _ in range(2):
        config.set_tenant_mode(
            "sqlite-folder", root=str(album_root), metadata="tenant_app:AlbumBase"
        )
    with pytest.raises(ConfigurationConflictError):
        config.commit()


def test_the_application_overrides_what_its_ini_file_said(folder_settings, tmp_path):
    # as everywhere in Pyramid: main()'s own call wins over includeme's
    other = tmp_path / "other-root"
    other.mkdir()
    with Configurator(
        settings={**folder_settings, "dbrouter.metadata": "tenant_app:AlbumBase"}
    ) as config:
        config.include("dbrouter_tenant")
        config.set_tenant_mode(
            "sqlite-folder", root=str(other), metadata="tenant_app:AlbumBase"
        )
    registry = config.registry
    create_tenant(registry, "x")
    assert (other / "x" / "album.sqlite").is_file()


def folder_app_with(folder_settings, **settings):
    app = make_app({**folder_settings, **settings})
    return webtest.TestApp(app), app.registry


def test_the_header_resolver(folder_settings):
    testapp, registry = folder_app_with(
        folder_settings,
        **{"dbrouter.tenant.resolver": "header", "dbrouter.tenant.header": "X-Album"},
    )
    create_tenant(registry, "summer")
    assert testapp.get("/whoami", headers={"X-Album": "summer"}).json == {
        "tenant": "summer"
    }
    assert testapp.get("/whoami").json == {"tenant": None}
    testapp.get("/whoami", headers={"X-Album": "../summer"}, status=404)
    testapp.get("/whoami", headers={"X-Album": "winter"}, status=404)


def test_the_subdomain_resolver(folder_settings):
    testapp, registry = folder_app_with(
        folder_settings,
        **{
            "dbrouter.tenant.resolver": "subdomain",
            "dbrouter.tenant.domain": "albums.example",
        },
    )
    create_tenant(registry, "summer")

    def who(host, status=200):
        return testapp.get("/whoami", extra_environ={"HTTP_HOST": host}, status=status)

    assert who("summer.albums.example").json == {"tenant": "summer"}
    assert who("SUMMER.albums.example:8080").json == {"tenant": "summer"}
    assert who("albums.example").json == {"tenant": None}
    assert who("summer.elsewhere.example").json == {"tenant": None}
    who("a.summer.albums.example", status=404)
    who("winter.albums.example", status=404)


def resolve_from_query(request):
    """A resolver of the application's own (dbrouter.tenant.resolver)."""
    return request.params.get("album")


def test_a_dotted_callable_resolver(folder_settings):
    testapp, registry = folder_app_with(
        folder_settings,
        **{"dbrouter.tenant.resolver": "test_tenant_config:resolve_from_query"},
    )
    create_tenant(registry, "summer")
    assert testapp.get("/whoami?album=summer").json == {"tenant": "summer"}
    testapp.get("/whoami?album=..", status=404)


def test_starting_up_creates_nothing_and_connects_nowhere(
    folder_settings, album_root, files_under
):
    make_app(
        {
            **folder_settings,
            "dbrouter.tenant.mode": "database",
            "dbrouter.tenant.root": None,
            "dbrouter.tenant.url": "postgresql+psycopg://u:p@127.0.0.1:1/postgres",
        }
    )
    assert files_under(album_root) == set()
