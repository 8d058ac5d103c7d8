"""The store: the source of truth (SQLite or PostgreSQL through SQLAlchemy Core)."""
