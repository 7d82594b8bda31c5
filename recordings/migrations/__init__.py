"""Alembic migrations of the call database, run programmatically by recordings.migrate (no alembic.ini)."""
