"""Alembic environment and versions (run by `erpsync db upgrade`)."""
