"""The Rune-equivalent web service on the ``rune`` Postgres schema, and the HTTP API it defines.

The legacy stand-in (``services.legacy_service``) serves the same API from the legacy MySQL
databases by plugging its own store into :mod:`services.rune_service.http_api`, so the two
cannot drift apart: one handler, one write fence, two stores.
"""
