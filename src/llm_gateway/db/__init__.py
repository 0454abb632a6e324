"""Relational storage for keys, users, teams and the usage ledger (SQLAlchemy Core, Alembic migrations)."""
