"""Alembic migrations of the runtime's schema (the only place tables are defined)."""
