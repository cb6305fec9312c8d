"""Alembic environment of the Rune target schema and runeshift's control schema.

Driven from :mod:`load.target_schema`, which builds the Alembic ``Config`` in code
(no ``alembic.ini``) and hands ``env.py`` an open connection.
"""
