"""Alembic revisions, oldest first: ``0001_control``, ``0002_rune_core``."""
