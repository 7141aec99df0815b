"""Alembic's env.py for a pyramid_dbrouter application (from
``python -m pyramid_dbrouter.alembic init``).

Every revision runs on every engine of the application -- ``default``, the
other ``sqlalchemy.NAME.url`` engines, the shards, and each tenant an engine
factory can list -- in its own transaction, with its own version table.  An
operation on a table an engine does not hold (``allow_migrate``, or
``__bind_key__``) is skipped on that engine.

    alembic -c development.ini upgrade head
    alembic -c development.ini -x engines=tenant:acme upgrade head
    alembic -c development.ini revision --autogenerate -m "add photos.caption"
"""

from alembic import context

from pyramid_dbrouter.alembic import run_migrations

run_migrations(
    context,
    # the tables your revisions describe; by default dbrouter.metadata
    # metadata=[myapp.models.Base, myapp.models.AlbumBase],
    # the INI file of the application, by default the one alembic was given
    # config_uri="development.ini",
)
