"""The project's top-level conftest: the plugin, and the one fixture the
project adds -- a tenant to test with, made once per session."""

import pytest

from dbrouter_tenant import create_tenant, list_tenants

pytest_plugins = ("pyramid_dbrouter.testing",)


@pytest.fixture(scope="session")
def dbrouter_schema(dbrouter_schema, app):
    """The plugin's (the tables of every static engine), and tenant acme."""
    if "acme" not in list_tenants(app.registry):
        create_tenant(app.registry, "acme")
    return dbrouter_schema
