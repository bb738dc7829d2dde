"""The WSGI entry point for production: ``gunicorn wsgi:app`` (from the repository root).

The configuration comes as for every sealgate command: ``$SEALGATE_CONFIG``, else
``./sealgate.toml``, else the embedded default, with ``SEALGATE_<SECTION>__<KEY>``
overrides; ``sealgate init`` must have run first.
"""

from portal.app import create_app

app = create_app()
